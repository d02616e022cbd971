"""The browser half of CLI sign-in: the device verification page (/device) and the authorization
endpoint of the PKCE code flow (/authorize). Both need a portal sign-in and an explicit, CSRF-protected
approval, and both hand the signed-in Identity to the sso-oidc token endpoint through the GrantStore,
with a reference to the portal session: the CLI's sign-in ends when that session does.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from flask import Blueprint, redirect, render_template, request

from broker.core import audit
from broker.core.sessions import PortalSession
from broker.http.context import API_CHANNEL, current_session, request_origin, state, upstream_choices
from broker.identity_center.codes import display_user_code, normalise_user_code, redirect_uri_allowed
from broker.identity_center.grants import CODE_GRANT, DEFAULT_SCOPE, SCOPES
from sso_common.web import UserFacingError, check_csrf, error_response

blueprint = Blueprint("device", __name__)

AUTHORIZE_FIELDS = ("client_id", "redirect_uri", "state", "code_challenge", "code_challenge_method", "scopes")


def _sign_in_first(next_path: str, reason: str):
    """The sign-in choice, returning here afterwards (the portal's /login page does not carry `next`)."""
    return render_template("device_signin.html", choices=upstream_choices(), next_path=next_path, reason=reason)


def _page(page: str, title: str, message: str = "", status: int = 200, **context):
    return render_template(
        "device.html", page=page, title=title, message=message, invalid=status >= 400, **context
    ), status


def _sso_origin():
    """Approvals are recorded on the CLI's channel: they are that channel's sign-ins."""
    return request_origin(API_CHANNEL)


def _confirm(session: PortalSession, client_name: str, requested_at: float | None, requested_from: str, **context):
    """The approval page: what approving grants (the person's AWS access, as them, until the portal
    session ends), the client's self-declared name, and when and from where the request came."""
    return _page(
        "confirm",
        "Approve this request?",
        client_name=client_name,
        identity=session.identity,
        session_expires=session.expires,
        requested_at=requested_at,
        requested_from=requested_from,
        **context,
    )


def _too_many_codes():
    """Guessing codes is throttled per person and per address for a window; say how long that is."""
    minutes = max(1, round(state().grants.settings.user_code_window / 60))
    response = error_response(
        f"Too many unknown codes were entered. Wait {minutes} minutes, then try again.", 429, "Too many attempts"
    )
    response.headers["Retry-After"] = str(state().grants.settings.user_code_window)
    return response


# --- device verification (RFC 8628) ---------------------------------------------------------------


def _device_request(raw_code: str, session):
    """(code, request) for what was typed, or an error page: malformed, guessed too often, unknown,
    expired, or already used."""
    user_code = normalise_user_code(raw_code)
    if user_code is None:
        return None, _page(
            "enter", "Enter your code", "That is not a valid code: it has 8 letters, shown as XXXX-XXXX.", 400
        )
    store, address = state().grants, request.remote_addr or ""
    if store.user_code_guessing_blocked(session.identity.subject, address):
        return None, _too_many_codes()
    found = store.device_request(user_code, session.identity.subject, address)
    if found is None:
        return None, _page(
            "enter",
            "Unknown code",
            "This code is unknown. Check it against your terminal, or start again there to get a new one.",
            404,
        )
    if found.expired:
        return None, _page(
            "problem",
            "Code expired",
            "This code has expired. Start the sign-in again in your terminal to get a new one.",
            410,
        )
    if found.decided:
        return None, _page(
            "problem",
            "Code already used",
            "This code was already approved or denied. Start the sign-in again in your terminal if you still need one.",
            409,
        )
    return found, None


@blueprint.get("/device")
def device():
    raw_code = request.args.get("user_code", "")
    session = current_session()
    if session is None:
        next_path = "/device" + (f"?{urlencode({'user_code': raw_code[:32]})}" if raw_code else "")
        return _sign_in_first(next_path, "Sign in to approve a sign-in request from a command-line tool.")
    if "user_code" not in request.args:
        return _page("enter", "Enter your code", "Enter the code your terminal shows.")
    if not raw_code.strip():
        return _page("enter", "Enter your code", "Enter your code: the 8 letters your terminal shows.", 400)
    found, problem = _device_request(raw_code, session)
    if problem:
        return problem
    return _confirm(
        session,
        found.client_name,
        found.requested_at,
        found.requested_from,
        user_code=display_user_code(found.user_code),
        action="/device",
        fields={"user_code": found.user_code},
    )


@blueprint.post("/device")
def device_decision():
    check_csrf()
    session = current_session()
    raw_code = request.form.get("user_code", "")
    if session is None:
        return redirect("/device?" + urlencode({"user_code": raw_code[:32]}), code=303)
    found, problem = _device_request(raw_code, session)
    if problem:
        return problem
    approve = request.form.get("decision") == "approve"
    reference = state().sessions.reference(session) if approve else None
    if approve and reference is None:
        return _page(
            "problem",
            "Signed out",
            "Your portal sign-in has ended. Sign in again and start again in your terminal.",
            401,
        )
    if not state().grants.decide(found.user_code, session.identity if approve else None, session.expires, reference):
        return _page(
            "problem",
            "Code no longer valid",
            "This request expired or was decided meanwhile. Start again in your terminal.",
            409,
        )
    audit.cli_sign_in(
        state().audit,
        _sso_origin(),
        session.upstream_id,
        session.identity,
        found.client_name,
        "device code",
        None if approve else f"device request from {found.client_name} denied by the user",
    )
    if approve:
        return _page(
            "done",
            "Request approved",
            f"{found.client_name} is signed in as you. You can close this window and return to your terminal.",
        )
    return _page(
        "done",
        "Request denied",
        f"{found.client_name} was not signed in. If you did not start this request, tell your security team.",
    )


# --- authorization code with PKCE (the AWS CLI's default flow) --------------------------------------


def _authorization_request(params) -> dict:
    """Check an authorization request. Until client and redirect URI are known good, problems are
    shown here (never redirected to an unchecked address); after that they go back to the client."""
    client_id, redirect_uri = params.get("client_id", ""), params.get("redirect_uri", "")
    client = state().grants.public_client(client_id[:256])
    if client is None or not redirect_uri_allowed(client.redirect_uris, redirect_uri[:2048]):
        raise UserFacingError(
            "The application's sign-in request is not valid (unknown client or redirect "
            "address). Start again from your terminal.",
            400,
            "Invalid sign-in request",
        )
    fields = {name: params.get(name, "")[:2048] for name in AUTHORIZE_FIELDS}
    fields["scopes"] = fields["scopes"] or DEFAULT_SCOPE
    if params.get("response_type", "code") != "code":
        raise _ClientError(fields, "unsupported_response_type", "response_type must be code.")
    if CODE_GRANT not in client.grant_types:
        raise _ClientError(fields, "unauthorized_client", "This client is not registered for the code flow.")
    if fields["code_challenge_method"] != "S256" or not 43 <= len(fields["code_challenge"]) <= 44:
        raise _ClientError(fields, "invalid_request", "PKCE with code_challenge_method S256 is required.")
    if not fields["state"]:
        raise _ClientError(fields, "invalid_request", "state is required.")
    if not set(fields["scopes"].split()) <= SCOPES:
        raise _ClientError(fields, "invalid_scope", f"Only {DEFAULT_SCOPE} is offered.")
    return {**fields, "client_name": client.name}


class _ClientError(Exception):
    """An OAuth error answer, sent back to the (checked) redirect URI with the request's state."""

    def __init__(self, fields: dict, error: str, description: str):
        super().__init__(description)
        self.fields, self.error, self.description = fields, error, description


def _back_to_client(fields: dict, **answer):
    separator = "&" if "?" in fields["redirect_uri"] else "?"
    return redirect(fields["redirect_uri"] + separator + urlencode({**answer, "state": fields["state"]}), code=303)


@blueprint.errorhandler(_ClientError)
def client_error(error: _ClientError):
    return _back_to_client(error.fields, error=error.error, error_description=error.description)


@blueprint.get("/authorize")
def authorize():
    fields = _authorization_request(request.args)
    session = current_session()
    if session is None:
        query = urlencode({"response_type": "code", **{name: fields[name] for name in AUTHORIZE_FIELDS}})
        return _sign_in_first(f"/authorize?{query}", f"Sign in to let {fields['client_name']} use your AWS access.")
    hidden = {name: fields[name] for name in AUTHORIZE_FIELDS}
    # The request is this browser's own visit, sent on by the application: made now, from here.
    return _confirm(
        session,
        fields["client_name"],
        time.time(),
        request.remote_addr or "",
        user_code=None,
        action="/authorize",
        fields=hidden,
    )


@blueprint.post("/authorize")
def authorize_decision():
    check_csrf()
    fields = _authorization_request(request.form)
    session = current_session()
    if session is None:
        raise UserFacingError("Your portal sign-in has ended. Start again from your terminal.", 401, "Signed out")
    if request.form.get("decision") != "approve":
        audit.cli_sign_in(
            state().audit,
            _sso_origin(),
            session.upstream_id,
            session.identity,
            fields["client_name"],
            "authorization code",
            f"code-flow request from {fields['client_name']} denied by the user",
        )
        return _back_to_client(fields, error="access_denied", error_description="The request was denied.")
    reference = state().sessions.reference(session)
    if reference is None:
        raise UserFacingError("Your portal sign-in has ended. Start again from your terminal.", 401, "Signed out")
    code = state().grants.new_authorization_code(
        fields["client_id"],
        fields["redirect_uri"],
        fields["code_challenge"],
        fields["scopes"].split(),
        session.identity,
        session.expires,
        reference,
    )
    audit.cli_sign_in(
        state().audit, _sso_origin(), session.upstream_id, session.identity, fields["client_name"], "authorization code"
    )
    return _back_to_client(fields, code=code)
