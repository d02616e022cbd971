"""The authlib authorization server of the IdP, and the few hooks authlib leaves to the application.

authlib does the protocol (request validation, PKCE, client authentication, token responses, ID token
encoding, logout and registration rules); this module only connects it to the store, the directory,
the shared SSO session and the signing keys.
"""

from __future__ import annotations

import logging
import secrets
import time

from authlib.consts import default_json_headers
from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2.rfc6749 import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Request,
    grants,
)
from authlib.oauth2.rfc6749.authenticate_client import ClientAuthentication as AuthlibClientAuthentication
from authlib.oauth2.rfc6749.authenticate_client import authenticate_client_secret_basic
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload, JsonPayload, JsonRequest
from authlib.oauth2.rfc6750 import BearerTokenValidator, InvalidTokenError
from authlib.oauth2.rfc7591 import ClientMetadataClaims, ClientRegistrationEndpoint
from authlib.oauth2.rfc7591.errors import (
    InvalidClientMetadataError,
    InvalidRedirectURIError,
)
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc import rpinitiated
from authlib.oidc.core import UserInfoEndpoint
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.core.util import create_half_hash
from flask import request as flask_request

from idp_mock.directory import Employee
from idp_mock.faults import Faults
from idp_mock.oidc_provider.claims import CLAIMS, SCOPES, user_claims
from idp_mock.oidc_provider.config import uri_problem
from idp_mock.oidc_provider.id_tokens import sign_id_token
from idp_mock.oidc_provider.keys import ALGORITHM, SigningKeys, keys_dir
from idp_mock.oidc_provider.models import (
    AUTH_METHODS,
    GRANT_TYPES,
    AccessToken,
    AuthorizationCode,
    OIDCClient,
    OIDCGrant,
    hash_secret,
)
from idp_mock.oidc_provider.storage import NonceUsed, OIDCStore, grant_person
from idp_mock.session import ACR_MFA, ACR_PASSWORD, OIDCParticipant, record_participant
from sso_common.web import bearer_token_matches

log = logging.getLogger(__name__)

ID_TOKEN_LIFETIME = 300


class ParamsRequest(OAuth2Request):
    """An authorization request made of plain parameters: the browser's, or the ones stashed while
    the user signs in."""

    def __init__(self, params: dict):
        # The address without its query (the parameters are `params`): werkzeug's `url` decodes the query into
        # an IRI, ~0.5 ms for an authorization request's, and nothing here reads it.
        super().__init__(flask_request.method, flask_request.base_url, headers=flask_request.headers)
        self.payload = BasicOAuth2Payload(params)

    @property
    def args(self):
        return self.payload.data

    @property
    def form(self):
        return {}


class OIDCServer(AuthorizationServer):
    def __init__(self, settings, store):
        super().__init__()
        self.settings = settings
        self.issuer = settings.issuer
        self.directory = settings.directory
        self.oidc_store = OIDCStore(store, settings)
        self.faults = Faults(settings.faults, store)
        self.keys = SigningKeys(keys_dir(settings))
        lifetime = settings.oidc.access_token_lifetime
        self.load_config(
            {  # authlib's Flask settings, kept out of app.config (shared with SAML)
                "OAUTH2_SCOPES_SUPPORTED": list(SCOPES),
                # Tokens from one read of the system's random source each (authlib's default draws every character
                # separately: a system call per character), as long and as random as authlib's own (256 bits and more).
                "OAUTH2_ACCESS_TOKEN_GENERATOR": _random_token(32),  # 43 characters
                # refresh tokens: issued only to clients allowed the refresh_token grant
                "OAUTH2_REFRESH_TOKEN_GENERATOR": _random_token(36),
                "OAUTH2_TOKEN_EXPIRES_IN": dict.fromkeys(GRANT_TYPES, lifetime),
            }
        )
        self.metadata = self._metadata()

    def _metadata(self) -> dict:
        base = self.issuer
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/oidc/authorize",
            "token_endpoint": f"{base}/oidc/token",
            "userinfo_endpoint": f"{base}/oidc/userinfo",
            "jwks_uri": f"{base}/oidc/jwks",
            "end_session_endpoint": f"{base}/oidc/logout",
            "registration_endpoint": f"{base}/oidc/register",
            "scopes_supported": list(SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": list(GRANT_TYPES),
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "acr", "amr", *CLAIMS],
            "acr_values_supported": [ACR_PASSWORD, ACR_MFA],
            "prompt_values_supported": ["none", "login"],
            "claims_parameter_supported": False,
            "backchannel_logout_supported": True,
            "backchannel_logout_session_supported": True,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
        }

    def query_client(self, client_id) -> OIDCClient | None:
        if not isinstance(client_id, str):
            return None
        client = self.settings.oidc.clients.get(client_id)
        return client if client is not None else self.oidc_store.client(client_id)

    def is_first_party(self, client: OIDCClient) -> bool:
        """One of Example Corp's own clients (config/idp.yaml), not one that registered itself."""
        return client.client_id in self.settings.oidc.clients

    def active_employee(self, username: str):
        employee = self.directory.find(username)
        return employee if employee and not employee.disabled else None

    def grant_user(self, grant: OIDCGrant | None) -> Employee | None:
        """Who a grant is for: the person a sign_in_as fault signed in, or an active directory person."""
        if grant is None:
            return None
        return grant_person(grant) or self.active_employee(grant.username)

    def save_token(self, token, request):
        source = request.authorization_code or request.refresh_token
        if not self.oidc_store.save_tokens(token, source.grant_id, request.client.client_id):
            raise InvalidGrantError("The grant was revoked.")

    def create_oauth2_request(self, request):
        if isinstance(request, dict):
            return ParamsRequest(request)
        return super().create_oauth2_request(request)


def _random_token(nbytes: int):
    def generate(*args, **kwargs) -> str:
        return secrets.token_urlsafe(nbytes)

    return generate


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def generate_authorization_code(self) -> str:
        """48 characters (288 bits) from one read of the random source (authlib's: a system call per character)."""
        return secrets.token_urlsafe(36)

    def save_authorization_code(self, code, request):
        """At the authorization endpoint the user is the SignIn of the SSO session (auth_time, amr)."""
        data = request.payload.data
        try:
            self.server.oidc_store.save_code(
                code,
                client_id=request.client.client_id,
                sign_in=request.user,
                scope=request.scope,
                redirect_uri=request.payload.redirect_uri,
                nonce=data.get("nonce"),
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                withheld=getattr(request, "withheld_claims", ()),
            )
        except NonceUsed:
            raise InvalidRequestError("Replay attack", redirect_uri=request.payload.redirect_uri) from None
        record_participant(OIDCParticipant(request.client.client_id))

    def query_authorization_code(self, code, client):
        found = self.server.oidc_store.take_code(code)
        if found is None or found[0].client_id != client.client_id:
            return None
        return AuthorizationCode(*found)

    def delete_authorization_code(self, authorization_code):
        """Nothing left to delete: query_authorization_code took the code atomically."""

    def authenticate_user(self, authorization_code):
        return self.server.grant_user(authorization_code.grant)


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation

    def authenticate_refresh_token(self, refresh_token):
        return self.server.oidc_store.take_refresh_token(refresh_token)

    def authenticate_user(self, refresh_token):
        return self.server.grant_user(self.server.oidc_store.grant(refresh_token.grant_id))

    def revoke_old_credential(self, refresh_token):
        """Nothing left to revoke: authenticate_refresh_token took the token atomically."""


class S256CodeChallenge(CodeChallenge):
    """PKCE with S256 only (`plain` and a missing method are refused), required of public clients
    already at the authorization endpoint rather than only when they redeem the code."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ("S256",)

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        if data.get("code_challenge") or data.get("code_challenge_method"):
            if data.get("code_challenge_method") != "S256":
                raise InvalidRequestError("Only code_challenge_method=S256 is supported.")
        elif grant.request.client.is_public:
            raise InvalidRequestError("Public clients must send a code_challenge (PKCE, S256).")
        super().validate_code_challenge(grant, redirect_uri)


class IDToken(OpenIDCode):
    """The ID token of the authorization code flow.

    `nonce` is optional in this flow (OIDC Core 3.1.2.1): a nonce that is sent is checked (not used before by
    this client) and returned in the ID token; a request without one gets an ID token without one. OIDC Core
    requires a nonce only in the implicit and hybrid flows (3.2.2.1, 3.3.2.11), which this provider does
    not offer: any response_type but `code` is refused (views.authorize, check_response_type)."""

    DEFAULT_EXPIRES_IN = ID_TOKEN_LIFETIME

    def __init__(self, server: OIDCServer):
        super().__init__(require_nonce=False)
        self.server = server

    def exists_nonce(self, nonce, request):
        """A request that shows the login form is refused early if its nonce was used. Once somebody is
        signed in the answer is normally the code, and the nonce is checked where the code is stored, by
        the store's atomic `add` (OIDCStore.save_code: one operation, and of two concurrent requests with
        the same nonce only one gets a code); a consent page or a forced login before that just defers it."""
        if request.user is not None:
            return False
        return self.server.oidc_store.nonce_used(request.payload.client_id, nonce)

    def resolve_client_private_key(self, client):
        return self.server.keys.private_keys

    def get_encode_header(self, client):
        return {"alg": ALGORITHM, "kid": self.server.keys.active_kid}

    def get_client_claims(self, client):
        return {"iss": self.server.issuer, "aud": client.client_id}

    def generate_user_info(self, user, scope):
        return user_claims(user, scope)

    def encode_id_token(self, token, request: OAuth2Request):
        """authlib's, with the faults of the client applied (idp_mock.faults): the claims, times, audience,
        key and algorithm a fault asks for."""
        client = request.client
        faults = {fault.kind: fault for fault in self.server.faults.active(f"oidc:{client.client_id}", "id_token")}
        now = int(time.time())
        claims = {**self.get_client_claims(client), "iat": now, "exp": now + self.DEFAULT_EXPIRES_IN}
        claims.update(self.get_authorization_code_claims(request.authorization_code))
        if token.get("access_token"):
            claims["at_hash"] = create_half_hash(token["access_token"], ALGORITHM).decode()
        claims.update(user_claims(request.user, token["scope"], thin="thin_id_token" in faults))
        for name in request.authorization_code.grant.withheld:
            claims.pop(name, None)
        if request.authorization_code.grant.sid:
            claims["sid"] = request.authorization_code.grant.sid  # for back-channel logout
        return sign_id_token(claims, faults, self.server.keys, client.client_id, now, self.DEFAULT_EXPIRES_IN)


class AccessTokenValidator(BearerTokenValidator):
    def __init__(self, server: OIDCServer):
        super().__init__()
        self.server = server

    def authenticate_token(self, token_string):
        record = self.server.oidc_store.access_token(token_string)
        if record is None:
            return None
        client = self.server.query_client(record.client_id)
        grant = self.server.oidc_store.grant(record.grant_id)
        employee = grant_person(grant) if grant else None
        employee = employee or self.server.active_employee(record.username)
        if client is None or employee is None:
            return None
        return AccessToken(record, client, employee, revoked=grant is None, withheld=grant.withheld if grant else ())


class UserInfo(UserInfoEndpoint):
    def __call__(self, request):
        """authlib's, for unsigned answers (the only kind offered), without the claims a "missing" fault
        withheld from the sign-in (idp_mock.faults)."""
        token = self.resource_protector.acquire_token("openid")
        claims = user_claims(token.get_user(), token.scope)
        for name in token.withheld:
            claims.pop(name, None)
        return 200, claims, default_json_headers


class EndSession(rpinitiated.EndSessionEndpoint):
    def get_server_jwks(self):
        return self.server.keys.public_keys

    def get_algorithms(self):
        return [ALGORITHM]

    def is_post_logout_redirect_uri_legitimate(self, request, post_logout_redirect_uri, client, logout_hint):
        """A registered URI is accepted without an id_token_hint too, because views.logout asks the person
        first: it redirects without asking only to one of Example Corp's own clients, when the hint names the
        current session or nobody is signed in. A self-registered client's address is always confirmed on
        the IdP's page, so the IdP is nobody's open redirector."""
        return True


class _Json(JsonPayload):
    def __init__(self, data):
        self._data = data

    @property
    def data(self):
        return self._data


class Registration(ClientRegistrationEndpoint):
    """RFC 7591, open to holders of the configured initial access token."""

    def __init__(self, server: OIDCServer):
        super().__init__(server, [ClientMetadataClaims, rpinitiated.ClientMetadataClaims])

    def create_endpoint_request(self, request):
        """A body that is not JSON becomes None (refused below) instead of werkzeug's HTML 400/415."""
        json_request = JsonRequest(flask_request.method, flask_request.url, flask_request.headers)
        json_request.payload = _Json(flask_request.get_json(silent=True))
        return json_request

    def authenticate_token(self, request):
        authorization = request.headers.get("Authorization")
        if not bearer_token_matches(authorization, self.server.settings.oidc.registration_token):
            raise InvalidTokenError("A valid initial access token is required to register a client.")
        return authorization.partition(" ")[2]

    def extract_client_metadata(self, request):
        data = request.payload.data
        if not isinstance(data, dict):
            raise InvalidClientMetadataError("The request body must be a JSON object.")
        redirect_uris = data.get("redirect_uris")
        if not isinstance(redirect_uris, list) or not redirect_uris or any(uri_problem(u) for u in redirect_uris):
            raise InvalidRedirectURIError("redirect_uris must list absolute http(s) URLs without fragments.")
        logout_uris = data.get("post_logout_redirect_uris", [])
        if not isinstance(logout_uris, list) or any(uri_problem(u) for u in logout_uris):
            raise InvalidClientMetadataError("post_logout_redirect_uris must list absolute http(s) URLs.")
        grant_types = data.get("grant_types", ["authorization_code"])
        if (
            not isinstance(grant_types, list)
            or "authorization_code" not in grant_types
            or not set(grant_types) <= set(GRANT_TYPES)
        ):
            raise InvalidClientMetadataError(
                "grant_types must be a list that includes authorization_code (and may include refresh_token)."
            )
        response_types = data.get("response_types", ["code"])
        if response_types != ["code"]:
            raise InvalidClientMetadataError(
                "response_types must be a list holding only code: only the code flow is offered."
            )
        name = data.get("client_name", "")
        if not isinstance(name, str) or len(name) > 200 or not name.isprintable():  # the consent page shows it
            raise InvalidClientMetadataError("client_name must be printable text of at most 200 characters.")
        try:
            return super().extract_client_metadata(request)
        except (TypeError, AttributeError, KeyError, ValueError) as error:
            # authlib's metadata checks assume well-typed values (and signal some rules with ValueError):
            # a number where a URL belongs is bad metadata, not a server error
            raise InvalidClientMetadataError("The client metadata is malformed.") from error

    def get_server_metadata(self):
        return self.server.metadata

    def generate_client_info(self, request):
        info = super().generate_client_info(request)
        if request.payload.data.get("token_endpoint_auth_method") == "none":
            del info["client_secret"], info["client_secret_expires_at"]
        return info

    def generate_client_registration_info(self, client, request):
        """The values that apply to the client, defaults included (RFC 7591 3.2.1: the response contains
        all registered metadata, including values the server set)."""
        return {
            "client_name": client.name,
            "redirect_uris": list(client.redirect_uris),
            "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
            "grant_types": list(client.grant_types),
            "response_types": ["code"],
            "token_endpoint_auth_method": client.token_endpoint_auth_method,
        }

    def save_client(self, client_info, client_metadata, request):
        secret = client_info.get("client_secret")
        client = OIDCClient(
            client_id=client_info["client_id"],
            name=client_metadata.get("client_name") or client_info["client_id"],
            redirect_uris=tuple(client_metadata["redirect_uris"]),
            post_logout_redirect_uris=tuple(client_metadata.get("post_logout_redirect_uris", [])),
            token_endpoint_auth_method=client_metadata["token_endpoint_auth_method"],
            grant_types=tuple(client_metadata.get("grant_types", ["authorization_code"])),
            secret_hash=hash_secret(secret) if secret else None,
        )
        self.server.oidc_store.save_client(client)
        log.info("registered OIDC client %s (%r)", client.client_id, client.name)
        return client


class ClientAuthentication(AuthlibClientAuthentication):
    """authlib's, with a failure that says what happened in words, and `WWW-Authenticate: Basic` only for a
    client that tried HTTP Basic (RFC 6749 5.2: 401 with the scheme the client used; otherwise 400)."""

    def authenticate(self, request, methods, endpoint):
        try:
            return super().authenticate(request, methods, endpoint)
        except InvalidClientError as error:
            scheme = (request.headers.get("Authorization") or "").partition(" ")[0].lower()
            used_basic = scheme == "basic"
            raise InvalidClientError(
                status_code=401 if used_basic else 400,
                description=error.description
                if error.description and not error.description.startswith("The client cannot authenticate")
                else "Client authentication failed: unknown client, wrong secret, or not the client's "
                "registered token_endpoint_auth_method.",
            ) from None


def _client_secret_basic(query_client, request):
    """authlib's, except that an Authorization header that is not UTF-8 fails authentication (not a 500)."""
    try:
        return authenticate_client_secret_basic(query_client, request)
    except UnicodeDecodeError:
        return None


def build_server(settings, store) -> OIDCServer:
    server = OIDCServer(settings, store)
    server._client_auth = ClientAuthentication(server.query_client)  # before register_client_auth_method
    server.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True), IDToken(server)])
    server.register_grant(RefreshTokenGrant)
    server.register_client_auth_method("client_secret_basic", _client_secret_basic)
    protector = ResourceProtector()
    protector.register_token_validator(AccessTokenValidator(server))
    server.register_endpoint(UserInfo(server, resource_protector=protector))
    server.register_endpoint(EndSession(server))
    server.register_endpoint(Registration(server))
    return server
