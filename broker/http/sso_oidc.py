"""sso-oidc on the portal: RegisterClient, StartDeviceAuthorization and CreateToken, as botocore calls them.

The browser half of each flow (the device verification page, /authorize) is in broker/http/device.py.
"""

from __future__ import annotations

import re

from flask import Blueprint, jsonify, request

from broker.http.aws_wire import (
    ApiError,
    install_error_handlers,
    json_body,
    optional_string,
    string_field,
    string_list,
)
from broker.http.context import state
from broker.identity_center.codes import display_user_code, is_loopback_redirect_uri
from broker.identity_center.grants import (
    CODE_GRANT,
    DEFAULT_SCOPE,
    DEVICE_GRANT,
    GRANT_TYPES,
    REFRESH_GRANT,
    SCOPES,
    RegisteredClient,
    Tokens,
)

blueprint = Blueprint("sso_oidc", __name__)
install_error_handlers(blueprint)

# What may follow the portal's URL in a startUrl: IAM Identity Center's start URLs end in /start, and
# people copy them from the browser with a trailing slash or the single-page app's `#` or `#/`.
START_URL_SUFFIX = r"(/start)?/?(#/?)?"


def is_this_portal(start_url: str, portal: str) -> bool:
    """Whether `start_url` names this portal: its URL as is, or as an Identity Center start URL."""
    return re.fullmatch(re.escape(portal) + START_URL_SUFFIX, start_url) is not None


@blueprint.post("/client/register")
def register_client():
    body = json_body()
    name = string_field(body, "clientName", max_length=128)
    if not name.isprintable():  # the approval page shows it: no line breaks or right-to-left overrides to spoof it
        raise ApiError("InvalidRequestException", "clientName must be printable text, without control characters.")
    if string_field(body, "clientType", max_length=32) != "public":
        raise ApiError("InvalidClientMetadataException", "clientType must be public.")
    scopes = string_list(body, "scopes") or [DEFAULT_SCOPE]
    unknown = sorted(set(scopes) - SCOPES)
    if unknown:
        raise ApiError("InvalidScopeException", f"Unknown scope {unknown[0]!r}; this portal offers {DEFAULT_SCOPE}.")
    grant_types = string_list(body, "grantTypes") or [DEVICE_GRANT]
    if not set(grant_types) <= GRANT_TYPES:
        raise ApiError("UnsupportedGrantTypeException", "Supported grant types: " + ", ".join(sorted(GRANT_TYPES)))
    redirect_uris = string_list(body, "redirectUris") or []
    if not all(is_loopback_redirect_uri(uri) for uri in redirect_uris):
        raise ApiError("InvalidRedirectUriException", "Redirect URIs must be http loopback addresses (127.0.0.1).")
    if CODE_GRANT in grant_types and not redirect_uris:
        raise ApiError("InvalidRedirectUriException", "The authorization_code grant needs a redirect URI.")
    optional_string(body, "issuerUrl", max_length=2048)
    registration = state().grants.register_client(name, scopes, grant_types, redirect_uris, request.remote_addr or "")
    portal = state().settings.portal_url
    return jsonify(
        clientId=registration.client_id,
        clientSecret=registration.client_secret,
        clientIdIssuedAt=registration.issued_at,
        clientSecretExpiresAt=registration.secret_expires_at,
        authorizationEndpoint=f"{portal}/authorize",
        tokenEndpoint=f"{portal}/token",
    )


def _authenticated_client(body: dict) -> tuple[str, RegisteredClient]:
    """The calling client, by the ID and secret in the body (sso-oidc has no other client authentication)."""
    client_id = string_field(body, "clientId", max_length=256)
    return client_id, state().grants.client(client_id, string_field(body, "clientSecret", max_length=256))


@blueprint.post("/device_authorization")
def start_device_authorization():
    body = json_body()
    client_id, client = _authenticated_client(body)
    start_url = string_field(body, "startUrl", max_length=2048)
    portal = state().settings.portal_url
    if not is_this_portal(start_url, portal):
        raise ApiError("InvalidRequestException", f"startUrl must be this portal's URL, {portal} (or {portal}/start).")
    started = state().grants.start_device_authorization(client_id, client, request.remote_addr or "")
    shown = display_user_code(started.user_code)
    return jsonify(
        deviceCode=started.device_code,
        userCode=shown,
        verificationUri=f"{portal}/device",
        verificationUriComplete=f"{portal}/device?user_code={shown}",
        expiresIn=started.expires_in,
        interval=started.interval,
    )


@blueprint.post("/token")
def create_token():
    body = json_body()
    client_id, client = _authenticated_client(body)
    grant_type = string_field(body, "grantType", max_length=128)
    if grant_type not in GRANT_TYPES:
        raise ApiError("UnsupportedGrantTypeException", f"Unsupported grant type {grant_type[:64]!r}.")
    if grant_type not in client.grant_types:
        raise ApiError("UnauthorizedClientException", f"This client is not registered for {grant_type}.")
    grants = state().grants
    if grant_type == REFRESH_GRANT:
        return _token_answer(grants.refresh(client_id, string_field(body, "refreshToken", max_length=512)))
    if grant_type == DEVICE_GRANT:
        approval = grants.redeem_device_code(client_id, string_field(body, "deviceCode", max_length=512))
    else:
        approval = grants.redeem_authorization_code(
            client_id,
            string_field(body, "code", max_length=512),
            optional_string(body, "redirectUri", max_length=2048),
            optional_string(body, "codeVerifier", max_length=128),
        )
    return _token_answer(grants.issue_tokens(client_id, client, approval))


def _token_answer(tokens: Tokens):
    answer = {"accessToken": tokens.access_token, "tokenType": "Bearer", "expiresIn": tokens.expires_in}
    if tokens.refresh_token:
        answer["refreshToken"] = tokens.refresh_token
    return jsonify(answer)
