// The benchmark's reference OpenID provider: panva's `oidc-provider` (a certified implementation), set up
// like this project's IdP for the measured flow: one confidential client (client_secret_basic), PKCE S256
// required, RS256 ID tokens carrying the profile claims (email, name, username, groups).
//
//   PORT=9000 REDIRECT_URI=http://127.0.0.1:9/callback node bench/peers/oidc_provider_peer.mjs
//
// Prints "ready <issuer>" when it listens. Its default in-memory storage is used (no database).
// There is no login form: the interaction endpoint signs in the fixed user `bench-user` and grants the
// requested scopes once, because the benchmark measures only requests made with an existing session.
// Installed at run time by the benchmark (`npm ci` in bench/peers; node_modules is git-ignored).

import crypto from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 9000);
const issuer = `http://127.0.0.1:${port}`;
const redirectUri = process.env.REDIRECT_URI || 'http://127.0.0.1:9/callback';
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'bench-rs256', alg: 'RS256', use: 'sig' };

const USER = {
  email: 'bench-user@example.com',
  email_verified: true,
  name: 'Bench User',
  preferred_username: 'bench-user',
  groups: ['team-00'],
};

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'bench-client',
    client_secret: 'bench-client-secret',
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  }],
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  conformIdTokenClaims: false, // scope claims in the ID token, as this project's IdP puts them
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: { // the lifetimes this project's IdP uses (seconds)
    AuthorizationCode: 60, AccessToken: 900, IdToken: 300, Grant: 28800, Session: 28800, Interaction: 900,
  },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub, ...USER }) }),
});
provider.on('server_error', (ctx, error) => console.error('server_error', error));

const oidc = provider.callback();

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  if (details.prompt.name === 'login') {
    await provider.interactionFinished(req, res, { login: { accountId: 'bench-user' } },
      { mergeWithLastSubmission: false });
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
server.keepAliveTimeout = 5000;
server.listen(port, '127.0.0.1', () => console.log(`ready ${issuer}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
