// panva's `oidc-provider` (a certified OpenID Provider), as the connector tests' independent upstream.
// Its default claims behaviour is kept (conformIdTokenClaims: true): the ID token carries sub (and amr,
// acr or auth_time only when the RP asks for them, here through the `claims` parameter), and email,
// groups and the profile come from the userinfo endpoint, as with many real OPs. The module comes from bench/peers/node_modules (installed there by `npm ci`).
//
//   OIDC_PROVIDER=/path/to/oidc-provider/lib/index.js PEER_CONFIG='{...}' node oidc_provider.mjs
//
// PEER_CONFIG (JSON): {"port": N, "clients": [oidc-provider client metadata...], "account": {claims},
// "amr": [...], "acr": "..."}. There is no login form: the interaction endpoint signs in the one account
// and grants what the client asked for. Prints "ready <issuer>" when it listens.

import crypto from 'node:crypto';
import http from 'node:http';
import { pathToFileURL } from 'node:url';

const { default: Provider } = await import(pathToFileURL(process.env.OIDC_PROVIDER).href);
const config = JSON.parse(process.env.PEER_CONFIG);
const issuer = `http://127.0.0.1:${config.port}`;
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'peer-rs256', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: config.clients,
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: { // which claims exist (amr is not announced by default); where they go stays the default
    amr: null,
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false }, claimsParameter: { enabled: true } }, // RPs may ask for amr
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub, ...config.account }) }),
});
provider.on('server_error', (ctx, error) => console.error('server_error', error));

const oidc = provider.callback();

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  if (details.prompt.name === 'login') {
    const login = { accountId: config.account.sub, amr: config.amr, acr: config.acr };
    await provider.interactionFinished(req, res, { login }, { mergeWithLastSubmission: false });
    return;
  }
  const grant = new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const server = http.createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((error) => {
      console.error(error);
      res.statusCode = 500;
      res.end('interaction failed');
    });
    return;
  }
  oidc(req, res);
});
server.listen(config.port, '127.0.0.1', () => console.log(`ready ${issuer}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
