"""HTTP endpoints of the OpenID provider.

Browser-facing endpoints (authorize, logout) answer problems with a readable page, or, once the client
and its redirect URI are known to be genuine, with an error redirect to that client. Machine-facing
endpoints (token, userinfo, register) always answer in the protocol's JSON format.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from urllib.parse import unquote, urlsplit

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import (
    AccessDeniedError,
    InvalidRequestError,
    UnsupportedResponseTypeError,
    scope_to_list,
)
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from flask import Blueprint, current_app, jsonify, redirect, render_template, request
from werkzeug.exceptions import HTTPException

from idp_mock.consent import consent_page
from idp_mock.faults import Fault
from idp_mock.faults import person as fault_person
from idp_mock.login import login_page
from idp_mock.oidc_provider.models import OIDCClient, PendingOIDCRequest
from idp_mock.oidc_provider.server import OIDCServer
from idp_mock.session import AMR_PASSWORD, SignIn, current_sign_in, end_session
from sso_common.operations import outage_answer, store_unavailable_message
from sso_common.store.errors import StoreUnavailable
from sso_common.web import UserFacingError, check_csrf, csrf_token, in_its_own_words, refusal_message

log = logging.getLogger(__name__)
pages = Blueprint("oidc_pages", __name__)
api = Blueprint("oidc_api", __name__)

MAX_PARAMETER_LENGTH = 4096
UNKNOWN_CLIENT = (
    "The application that sent you here is not registered with Example Corp sign-in. "
    "Contact the application's administrator."
)
BAD_REDIRECT = (
    "The application that sent you here asked to return to an address it has not registered. "
    "For your safety the sign-in stops here."
)
EXPIRED = "This sign-in request has expired. Go back to the application and start again."


def _server() -> OIDCServer:
    return current_app.extensions["oidc"]


def _parameters() -> tuple[dict[str, str], set[str]]:
    values = request.values
    return {name: values[name] for name in values}, {name for name in values if len(values.getlist(name)) > 1}


def _too_long(params: dict[str, str]) -> bool:
    return any(len(value) > MAX_PARAMETER_LENGTH for value in params.values())


# --- discovery ------------------------------------------------------------------------------------


@api.get("/.well-known/openid-configuration")
def discovery():
    return jsonify(_server().metadata)


@api.get("/oidc/jwks")
def jwks():
    return jsonify(_server().keys.jwks())


# --- authorization endpoint ---------------------------------------------------------------------


@pages.route("/oidc/authorize", methods=["GET", "POST"])
def authorize():
    params, repeated = _parameters()
    client = None if repeated & {"client_id", "redirect_uri"} else _server().query_client(params.get("client_id"))
    if client is None:
        raise UserFacingError(UNKNOWN_CLIENT, 400, "Unknown application")
    if not client.check_redirect_uri(params.get("redirect_uri")):
        raise UserFacingError(BAD_REDIRECT, 400, "Sign-in request refused")
    state = params.get("state")
    if repeated or _too_long(params):
        state = state if "state" not in repeated and len(state or "") <= MAX_PARAMETER_LENGTH else None
        return _server().handle_error_response(
            None,
            InvalidRequestError(
                "A parameter is repeated or too long.", redirect_uri=params["redirect_uri"], state=state
            ),
        )
    if params.get("response_type") != "code":
        # authlib puts the raw value in an error description, which fails (a 500) on quotes or backslashes
        return _server().handle_error_response(
            None,
            UnsupportedResponseTypeError(params.get("response_type"), redirect_uri=params["redirect_uri"], state=state),
        )
    return _authorize(params)


CONTINUE_PATH = "/oidc/authorize/continue/"


@pages.get(f"{CONTINUE_PATH}<handle>")
def authorize_continue(handle: str):
    """The stashed request, now with a session: finished by the sign-in's POST itself
    (idp_mock.login.register_continuation), or reached by a redirect (a browser already signed in at /login)."""
    pending = _server().oidc_store.pending_request(handle)
    if pending is None:
        raise UserFacingError(EXPIRED, 400, "Sign-in expired")
    return _authorize(pending.params, pending, handle)


def _authorize(
    params: dict[str, str],
    pending: PendingOIDCRequest | None = None,
    handle: str | None = None,
    consented: bool = False,
):
    server = _server()
    target = f"oidc:{params['client_id']}"  # a client verified by authorize(), or stashed after that
    # Faults are used up by the answer that gets them, not by the redirect to the login form before it.
    faults = (
        server.faults.active(target, "authorize")
        if "sign_in_as" in server.faults.pending_kinds(target, "authorize")
        else None
    )
    stand_in = next((fault for fault in faults or () if fault.kind == "sign_in_as"), None)
    sign_in = _fault_sign_in(stand_in) if stand_in else current_sign_in()
    try:
        grant = server.get_consent_grant(params, end_user=sign_in)
        state = params.get("state")
        max_age = params.get("max_age")
        if max_age is not None and not re.fullmatch(r"[0-9]{1,9}", max_age):
            raise InvalidRequestError(
                "max_age must be a whole number of seconds.", redirect_uri=grant.redirect_uri, state=state
            )
        prompts = (params.get("prompt") or "").split()
        if stand_in is not None:  # signed in by the fault: no login form, no consent page
            fresh_login_needed = False
        elif pending is not None:  # back from the login page: a forced login must be newer than the request
            fresh_login_needed = pending.force and (sign_in is None or sign_in.auth_time < pending.requested_at)
        else:
            fresh_login_needed = "login" in prompts or (
                max_age is not None and sign_in is not None and time.time() - sign_in.auth_time > int(max_age)
            )
        if sign_in is None or fresh_login_needed:
            if "none" in prompts:
                raise LoginRequiredError(redirect_uri=grant.redirect_uri, state=state)
            handle = handle or server.oidc_store.stash_request(
                PendingOIDCRequest(params, int(time.time()), fresh_login_needed)
            )
            return login_page(f"{CONTINUE_PATH}{handle}", force=fresh_login_needed, login_hint=params.get("login_hint"))
        scopes = tuple(scope_to_list(grant.request.payload.scope) or ())
        if stand_in is None and not consented and _consent_needed(grant.client, sign_in, scopes, prompts):
            if "none" in prompts:
                raise ConsentRequiredError(redirect_uri=grant.redirect_uri, state=state)
            handle = handle or server.oidc_store.stash_request(PendingOIDCRequest(params, int(time.time()), False))
            return _consent_page(grant.client, grant.redirect_uri, sign_in, scopes, handle)
        faults = server.faults.active(target, "authorize") if faults is None else faults
        _authorize_faults(faults, grant.redirect_uri, state)
        grant.request.withheld_claims = tuple(fault.name for fault in faults if fault.kind == "missing")
        response = server.create_authorization_response(grant.request, grant=grant, grant_user=sign_in)
    except OAuth2Error as error:
        if not error.redirect_uri:
            raise UserFacingError(
                f"This sign-in request is not valid: {error.get_error_description()}", 400, "Sign-in request refused"
            ) from None
        response = server.handle_error_response(None, error)
    if handle:
        server.oidc_store.drop_pending_request(handle)
    return response


def _fault_sign_in(fault: Fault) -> SignIn:
    """The sign-in a sign_in_as fault stands in for the login form (idp_mock.faults)."""
    person = fault_person(_server().directory, fault)
    if person is None:
        raise UserFacingError(
            f"The sign_in_as fault names {fault.username!r}, who is not in the directory.", 400, "Fault misconfigured"
        )
    return SignIn("", person, int(time.time()), AMR_PASSWORD)


def _authorize_faults(faults: list[Fault], redirect_uri: str, state: str | None) -> None:
    for fault in faults:
        if fault.kind == "delay":
            time.sleep(fault.seconds)
    for fault in faults:
        if fault.kind == "error":
            raise OAuth2Error(
                description=fault.description or None, error=fault.error, redirect_uri=redirect_uri, state=state
            )


# --- consent for third parties (idp_mock.consent) ------------------------------------------------


SCOPE_WORDS = {
    "openid": "who you are at Example Corp (a stable identifier)",
    "profile": "your name, username and department",
    "email": "your email address",
    "groups": "the groups you belong to",
}


def _consent_needed(client: OIDCClient, sign_in: SignIn, scopes: tuple[str, ...], prompts: list[str]) -> bool:
    """Only clients that registered themselves ask; a remembered answer covers the scopes it allowed."""
    if _server().is_first_party(client):
        return False
    consents = current_app.extensions["idp"].consents
    return "consent" in prompts or not consents.given(sign_in.employee.username, f"oidc:{client.client_id}", scopes)


def _consent_page(client: OIDCClient, redirect_uri: str, sign_in: SignIn, scopes: tuple[str, ...], handle: str):
    return consent_page(
        party_name=client.name,
        party_url=redirect_uri,
        releases=[SCOPE_WORDS[scope] for scope in scopes if scope in SCOPE_WORDS],
        username=sign_in.employee.username,
        action=f"/oidc/authorize/consent/{handle}",
        hidden={},
    )


@pages.post("/oidc/authorize/consent/<handle>")
def authorize_consent(handle: str):
    """The person's answer on the consent page: allowed, the authorization goes on; denied, the client gets
    access_denied."""
    check_csrf()
    server = _server()
    pending = server.oidc_store.pending_request(handle)
    if pending is None:
        raise UserFacingError(EXPIRED, 400, "Sign-in expired")
    sign_in = current_sign_in()
    if sign_in is None:  # signed out meanwhile (another tab): sign in again, then asked again
        return _authorize(pending.params, pending, handle)
    if request.form.get("decision") != "allow":
        server.oidc_store.drop_pending_request(handle)
        try:
            grant = server.get_consent_grant(pending.params, end_user=sign_in)
        except OAuth2Error:
            raise UserFacingError(EXPIRED, 400, "Sign-in expired") from None
        log.info("consent denied by %s to client %s", sign_in.employee.username, grant.client.client_id)
        return server.handle_error_response(
            None,
            AccessDeniedError(
                "The person did not allow the application.",
                redirect_uri=grant.redirect_uri,
                state=pending.params.get("state"),
            ),
        )
    scopes = tuple(scope_to_list(pending.params.get("scope")) or ())
    client_id = pending.params["client_id"]
    current_app.extensions["idp"].consents.remember(
        sign_in.employee.username, f"oidc:{client_id}", scopes, int(time.time())
    )
    log.info("consent given by %s to client %s", sign_in.employee.username, client_id)
    return _authorize(pending.params, pending, handle, consented=True)


# --- token, userinfo, registration --------------------------------------------------------------


@api.post("/oidc/token")
def token():
    if request.mimetype != "application/x-www-form-urlencoded":
        return _server().handle_error_response(
            None, InvalidRequestError("The token request must be application/x-www-form-urlencoded.")
        )
    failure = _token_faults()
    if failure is not None:
        return failure
    with _server().oidc_store.token_request():
        return _server().create_token_response()


def _token_faults():
    """The faults of the client for this token answer (idp_mock.faults): a delay, or an error answered
    instead. The client is named by its Basic credentials or its client_id (not yet authenticated: a
    fault is a test switch, it grants nothing)."""
    server = _server()
    client_id = request.form.get("client_id")
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            client_id = unquote(base64.b64decode(credentials.strip(), validate=True).decode().split(":", 1)[0])
        except (ValueError, UnicodeDecodeError):
            return None
    if not client_id or server.query_client(client_id) is None:
        return None
    faults = server.faults.active(f"oidc:{client_id}", "token")
    for fault in faults:
        if fault.kind == "delay":
            time.sleep(fault.seconds)
    for fault in faults:
        if fault.kind == "error":
            status = 401 if fault.error == "invalid_client" and scheme.lower() == "basic" else 400
            error = OAuth2Error(description=fault.description or None, error=fault.error, status_code=status)
            return server.handle_error_response(None, error)
    return None


@api.route("/oidc/userinfo", methods=["GET", "POST"])
def userinfo():
    return _server().create_endpoint_response("userinfo")


@api.post("/oidc/register")
def register_client():
    return _server().create_endpoint_response("client_registration")


@api.errorhandler(400)
@api.errorhandler(405)
@api.errorhandler(413)
def api_unreadable_body(error: HTTPException):
    """Oversized or unreadable bodies, and methods an endpoint does not take, get a protocol error, not the HTML
    error page."""
    refusal = InvalidRequestError(refusal_message(error), status_code=error.code)
    answer = _server().handle_error_response(None, refusal)
    return in_its_own_words(answer, error)


@api.errorhandler(StoreUnavailable)
def api_store_unavailable(error: StoreUnavailable):
    """The state store is down or restarting: an OAuth error a client can act on (`temporarily_unavailable`, 503,
    Retry-After; an HTTP client retries it), not the HTML page. Nothing was issued."""
    message = store_unavailable_message(error)
    refusal = OAuth2Error(description=message, error="temporarily_unavailable", status_code=503)
    return outage_answer(error, _server().handle_error_response(None, refusal))


# --- RP-initiated logout ------------------------------------------------------------------------


@pages.route("/oidc/logout", methods=["GET", "POST"])
def logout():
    server = _server()
    params, repeated = _parameters()
    if repeated or _too_long(params):
        raise UserFacingError("This sign-out request is not valid.", 400, "Sign-out request refused")
    try:
        logout_request = server.validate_endpoint_request("end_session")
    except OAuth2Error:
        raise UserFacingError(
            "This sign-out request is not valid: the ID token hint was not issued here "
            "or does not match the application.",
            400,
            "Sign-out request refused",
        ) from None
    if params.get("post_logout_redirect_uri") and not logout_request.redirect_uri:
        raise UserFacingError(
            "The application asked to return to an address it has not registered. You are still signed in.",
            400,
            "Sign-out request refused",
        )
    sign_in = current_sign_in()
    confirmed = request.method == "POST" and params.get("confirm") == "1"
    if confirmed:
        check_csrf()
    hint = logout_request.id_token_claims or {}
    hint_matches_session = (
        sign_in is not None
        and hint.get("sub") == sign_in.employee.subject
        and hint.get("auth_time") == sign_in.auth_time
    )
    client = logout_request.client
    third_party_return = bool(logout_request.redirect_uri) and (client is None or not server.is_first_party(client))
    if not confirmed and ((sign_in is not None and not hint_matches_session) or third_party_return):
        hidden = {
            name: params[name]
            for name in ("id_token_hint", "client_id", "post_logout_redirect_uri", "state")
            if params.get(name)
        }
        return render_template(
            "logout.html",
            action="/oidc/logout",
            hidden={**hidden, "confirm": "1"},
            client_name=client.name if client else None,
            signed_in=sign_in is not None,
            return_site=urlsplit(logout_request.redirect_uri).netloc if third_party_return else None,
            csrf_token=csrf_token(),
        )
    response = redirect(logout_request.redirect_uri or "/?signed_out=1", code=303)
    end_session(response)
    return response
