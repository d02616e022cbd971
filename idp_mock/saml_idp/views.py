"""The SAML IdP's endpoints: metadata, SSO (SP- and IdP-initiated), single logout, SP registration.

A parsed AuthnRequest is kept server-side (state store, short TTL) while the user signs in on the login
form shown in answer to it; the form names a local path (/saml/continue) that the sign-in's POST finishes in
place, answering with the auto-posting Response (idp_mock.login.register_continuation): a POST-binding request
cannot be replayed by a redirect, and nothing the browser brings back is trusted except the random handle.
A Response is only ever posted to an ACS URL registered for the SP that asked. Requests are authenticated by the SP's
certificate (configured, registered, or from its published metadata): LogoutRequests always, AuthnRequests
when the SP requires signed requests; an SP whose metadata cannot be fetched gets a 503, never a pass.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass

import werkzeug
from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
)
from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as SAML

from idp_mock.consent import consent_page
from idp_mock.errors import AlreadyConfigured, BadSignature, MetadataError, Refused
from idp_mock.faults import person as fault_person
from idp_mock.login import login_page
from idp_mock.saml_idp.config import SAMLSettings, ServiceProvider, name_id_value
from idp_mock.saml_idp.messages import (
    REQUEST_LIFETIME,
    Inbound,
    check_envelope,
    check_relay_state,
    parse_authn_request,
    parse_logout_request,
    receive,
    verify,
)
from idp_mock.saml_idp.registry import ServiceProviders
from idp_mock.saml_idp.responses import (
    Grant,
    logout_response,
    new_id,
    signed_post,
    signed_redirect_url,
    sso_response,
    status_response,
)
from idp_mock.session import (
    AMR_PASSWORD,
    SAMLParticipant,
    SignIn,
    current_sign_in,
    end_session,
    participants,
    record_participant,
)
from sso_common.keys import SigningIdentity
from sso_common.records import Record
from sso_common.web import UserFacingError, bearer_api_error, bearer_api_refusals, bearer_token_matches, check_csrf

log = logging.getLogger(__name__)
blueprint = Blueprint("saml", __name__, static_folder="static", static_url_path="/saml/static")

PENDING_KIND = "saml_pending"
PENDING_TTL = 900  # time to sign in (password, TOTP) before the request is forgotten
SEEN_REQUEST_KIND = "saml_request_seen"
SAML_STATUS = "urn:oasis:names:tc:SAML:2.0:status:"
CONTINUE_PREFIX = "/saml/continue?request="


@dataclass
class SAMLIdP:
    """What the SAML endpoints share, kept in app.extensions['saml']."""

    settings: SAMLSettings
    identity: SigningIdentity
    service_providers: ServiceProviders
    metadata: dict[bool, bytes]  # by WantAuthnRequestsSigned


@dataclass(frozen=True)
class PendingSAMLRequest(Record):
    """A sign-in to an SP waiting for the login, kept server-side under a random handle."""

    sp: str  # entity ID
    acs_url: str  # registered for the SP (already checked)
    request_id: str | None  # the AuthnRequest's ID; None when IdP-initiated
    relay_state: str | None
    name_id_format: str
    force: bool  # ForceAuthn
    passive: bool  # IsPassive
    stale: str | None  # with ForceAuthn: the fingerprint of the sign-in present when the request arrived


def _saml() -> SAMLIdP:
    return current_app.extensions["saml"]


def _idp():
    return current_app.extensions["idp"]


@blueprint.get("/saml/metadata")
def metadata():
    """The IdP's metadata; with ?sp=ENTITY_ID, WantAuthnRequestsSigned says what applies to that SP."""
    want_signed = True
    if "sp" in request.args:
        sp = _saml().service_providers.find(request.args["sp"])
        if sp is None:
            raise UserFacingError("There is no application with that identifier.", 404, "Unknown application")
        want_signed = sp.require_signed_requests
    return Response(_saml().metadata[want_signed], mimetype="application/samlmetadata+xml")


def _known_sp(entity_id: str) -> ServiceProvider:
    sp = _saml().service_providers.find(entity_id)
    if sp is None:
        raise Refused("The application that sent you here is not registered with Example Corp.")
    return sp


def _verified(message: Inbound, logout: bool) -> tuple[ServiceProvider, etree._Element]:
    """The SP that sent the message, and the message's trusted root (see messages.verify). Every
    LogoutRequest must be signed: an unsigned one would let anyone sign anyone out. When a signature
    does not verify and the SP publishes its metadata, the metadata is fetched again once (key rotation)."""
    sp = _known_sp(message.issuer)
    required = logout or sp.require_signed_requests
    try:
        return sp, verify(message, sp, required=required)
    except BadSignature:
        newer = _saml().service_providers.refreshed(sp)
        if newer is None:
            raise
        return newer, verify(message, newer, required=required)


# --- single sign-on ---------------------------------------------------------------------------------


@blueprint.route("/saml/sso", methods=["GET", "POST"])
def sso():
    message = receive()
    sp, root = _verified(message, logout=False)
    check_envelope(root, "AuthnRequest", _saml().settings.sso_url, _idp().settings.clock_skew)
    authn = parse_authn_request(root)
    acs_url = _acs_url(sp, authn.acs_url, authn.acs_index, authn.protocol_binding)
    if not _idp().store.add(
        SEEN_REQUEST_KIND, f"{sp.entity_id}\x00{authn.id}", {}, REQUEST_LIFETIME + 2 * _idp().settings.clock_skew
    ):
        raise Refused("This sign-in request was already used. Go back to the application and sign in again.")
    return _proceed(
        PendingSAMLRequest(
            sp=sp.entity_id,
            acs_url=acs_url,
            request_id=authn.id,
            relay_state=message.relay_state,
            name_id_format=_name_id_format(sp, authn.name_id_format),
            force=authn.force_authn,
            passive=authn.is_passive,
            stale=_fingerprint(current_sign_in()) if authn.force_authn else None,
        )
    )


def _acs_url(sp: ServiceProvider, url: str | None, index: int | None, binding: str | None) -> str:
    """The registered ACS the request names (by URL or index), else the SP's default. Never an unregistered URL."""
    if binding is not None and binding != SAML.BINDING_HTTP_POST:
        raise Refused("Only the HTTP-POST binding is supported for the response (ProtocolBinding).")
    if url is not None and index is not None:
        raise Refused("The request names both an AssertionConsumerServiceURL and an index.")
    if url is not None:
        if not any(endpoint.url == url for endpoint in sp.acs):
            raise Refused("The address the application asked to be answered at is not registered for it.")
        return url
    if index is not None:
        endpoint = next((endpoint for endpoint in sp.acs if endpoint.index == index), None)
        if endpoint is None:
            raise Refused("The AssertionConsumerServiceIndex is not registered for this application.")
        return endpoint.url
    return sp.default_acs.url


def _name_id_format(sp: ServiceProvider, requested: str | None) -> str:
    """The SP's default format, unless it asks for another one it is set up for ("unspecified" leaves it to us)."""
    if requested in (None, SAML.NAMEID_UNSPECIFIED):
        return sp.name_id_formats[0]
    if requested not in sp.name_id_formats:
        raise Refused("The application asked for a NameID format it is not set up to receive.")
    return requested


def _fingerprint(sign_in: SignIn | None) -> str | None:
    """Names a sign-in without keeping its session ID (a usable cookie value) in the store."""
    return hashlib.sha256(sign_in.session_id.encode()).hexdigest() if sign_in else None


def _usable_sign_in(pending: PendingSAMLRequest) -> SignIn | None:
    """The browser's sign-in, if it may answer the request: for ForceAuthn a new one (every login starts a
    new session, so a session other than the one present when the request arrived proves a fresh login)."""
    sign_in = current_sign_in()
    if sign_in is None or (pending.force and _fingerprint(sign_in) == pending.stale):
        return None
    return sign_in


def _proceed(pending: PendingSAMLRequest) -> werkzeug.Response:
    """Answer now if the browser's sign-in is good enough (or a sign_in_as fault stands in for it), else
    keep the request and send the user to log in."""
    if "sign_in_as" in _idp().faults.pending_kinds(f"saml:{pending.sp}", "answer"):
        return _answer(pending, None)
    sign_in = _usable_sign_in(pending)
    if sign_in is not None:
        return _answer(pending, sign_in)
    if pending.passive:
        sp = _known_sp(pending.sp)
        xml = status_response(
            pending.acs_url,
            pending.request_id,
            SAML.STATUS_NO_PASSIVE,
            _saml().settings.entity_id,
            _saml().identity,
        )
        return _post_form(sp.name, pending.acs_url, xml, pending.relay_state)
    return login_page(f"{CONTINUE_PREFIX}{_keep(pending)}", force=pending.force)


def _keep(pending: PendingSAMLRequest) -> str:
    """Keep the request server-side while the person signs in or answers the consent page: its handle."""
    handle = secrets.token_urlsafe(32)
    _idp().store.put(PENDING_KIND, handle, pending.to_record(), PENDING_TTL)
    return handle


@blueprint.get("/saml/continue")
def resume():
    return resume_request(request.args.get("request", ""))


def resume_request(handle: str) -> werkzeug.Response:
    """The kept request, now with a session: finished by the sign-in's POST itself, or reached by a redirect
    (a browser already signed in at /login)."""
    record = _idp().store.get(PENDING_KIND, handle) if handle else None
    if record is None:
        raise UserFacingError(
            "This sign-in has expired or was already completed. Go back to the application and sign in again.",
            400,
            "Sign-in expired",
        )
    pending = PendingSAMLRequest.from_record(record)
    sign_in = _usable_sign_in(pending)
    if sign_in is None:
        return login_page(f"{CONTINUE_PREFIX}{handle}", force=pending.force)
    if _idp().store.take(PENDING_KIND, handle) is None:  # another tab completed it meanwhile
        raise UserFacingError("This sign-in was already completed.", 400, "Sign-in expired")
    return _answer(pending, sign_in)


@blueprint.get("/saml/idp-initiated")
def idp_initiated():
    """Start a sign-in to an SP from the IdP (e.g. an app launcher link): ?sp=<entity ID>&RelayState=..."""
    sp = _saml().service_providers.find(request.args.get("sp", ""))
    if sp is None:
        raise UserFacingError("There is no application with that identifier.", 404, "Unknown application")
    if not sp.allow_idp_initiated:
        raise UserFacingError(
            f"{sp.name} does not accept sign-ins started here. Open {sp.name} and sign in from there.",
            403,
            "Start at the application",
        )
    relay_state = check_relay_state(request.args.get("RelayState"))
    return _proceed(
        PendingSAMLRequest(
            sp=sp.entity_id,
            acs_url=sp.default_acs.url,
            request_id=None,
            relay_state=relay_state,
            name_id_format=sp.name_id_formats[0],
            force=False,
            passive=False,
            stale=None,
        )
    )


def _answer(pending: PendingSAMLRequest, sign_in: SignIn | None, consented: bool = False) -> werkzeug.Response:
    """Issue the Response for the signed-in user (None: the one a sign_in_as fault names) and post it to the
    (already checked) ACS URL; first ask consent if the SP registered itself."""
    sp = _known_sp(pending.sp)
    if sign_in is not None and not consented and _consent_needed(sp, sign_in):
        return _consent_page(sp, pending, sign_in)
    faults = {fault.kind: fault for fault in _idp().faults.active(f"saml:{sp.entity_id}", "answer")}
    if "delay" in faults:
        time.sleep(faults["delay"].seconds)
    if "sign_in_as" in faults:
        person = fault_person(_idp().directory, faults["sign_in_as"])
        if person is None:
            raise UserFacingError(
                "The sign_in_as fault names someone not in the directory.", 400, "Fault misconfigured"
            )
        sign_in = SignIn("", person, int(time.time()), AMR_PASSWORD)
    if sign_in is None:  # the sign_in_as fault was used up by another request meanwhile
        return login_page(f"{CONTINUE_PREFIX}{_keep(pending)}", force=pending.force)
    if "error" in faults:
        error = faults["error"]
        xml = status_response(
            pending.acs_url,
            pending.request_id,
            SAML_STATUS + error.substatus if error.substatus else None,
            _saml().settings.entity_id,
            _saml().identity,
            top=SAML_STATUS + error.status,
            message=error.description or None,
        )
        return _post_form(sp.name, pending.acs_url, xml, pending.relay_state)
    employee = sign_in.employee
    if sp.aws is not None and not sp.aws.roles_for(employee):
        raise UserFacingError(
            f"Your account has no role in {sp.name}. Ask the IT service desk for access.", 403, "No access"
        )
    name_id = name_id_value(employee, pending.name_id_format)
    # One SessionIndex per SP and IdP session, remembered for single logout.
    known = next(
        (p for p in participants() if isinstance(p, SAMLParticipant) and p.sp == sp.entity_id and p.name_id == name_id),
        None,
    )
    session_index = known.session_index if known else new_id()
    record_participant(SAMLParticipant(sp.entity_id, name_id, pending.name_id_format, session_index))
    grant = Grant(
        sp,
        pending.acs_url,
        pending.request_id,
        sign_in,
        pending.name_id_format,
        session_index,
        sign_in.auth_time + _idp().settings.session_lifetime,
    )
    xml = sso_response(grant, _saml().settings.entity_id, _saml().identity, _idp().settings.clock_skew, faults)
    log.info(
        "SAML assertion for %s to %s (%s)",
        employee.username,
        sp.entity_id,
        "SP-initiated" if pending.request_id else "IdP-initiated",
    )
    return _post_form(sp.name, pending.acs_url, xml, pending.relay_state)


# --- consent for SPs registered at run time (idp_mock.consent) -----------------------------------------

ATTRIBUTE_WORDS = {
    "email": "your email address",
    "displayName": "your name",
    "department": "your department",
    "groups": "the groups you belong to",
}


def _consent_needed(sp: ServiceProvider, sign_in: SignIn) -> bool:
    """Only SPs registered at run time ask; Example Corp's own (config/idp.yaml) never do."""
    if sp.entity_id in _saml().settings.service_providers:
        return False
    return not _idp().consents.given(sign_in.employee.username, f"saml:{sp.entity_id}", sp.attributes)


def _consent_page(sp: ServiceProvider, pending: PendingSAMLRequest, sign_in: SignIn) -> werkzeug.Response:
    return consent_page(
        party_name=sp.name,
        party_url=pending.acs_url,
        releases=["who you are at Example Corp (a stable identifier)"]
        + [ATTRIBUTE_WORDS[name] for name in sp.attributes if name in ATTRIBUTE_WORDS],
        username=sign_in.employee.username,
        action="/saml/consent",
        hidden={"request": _keep(pending)},
    )


@blueprint.post("/saml/consent")
def consent():
    """The person's answer on the consent page: allowed, the assertion is posted; denied, the SP gets a
    signed Response with status Requester / RequestDenied."""
    check_csrf()
    handle = request.form.get("request", "")
    record = _idp().store.take(PENDING_KIND, handle) if handle else None
    if record is None:
        raise UserFacingError("This sign-in has expired or was already completed.", 400, "Sign-in expired")
    pending = PendingSAMLRequest.from_record(record)
    sign_in = _usable_sign_in(pending)
    if sign_in is None:  # signed out meanwhile: sign in, then asked again
        return login_page(f"{CONTINUE_PREFIX}{_keep(pending)}", force=pending.force)
    sp = _known_sp(pending.sp)
    if request.form.get("decision") != "allow":
        log.info("consent denied by %s to SAML SP %s", sign_in.employee.username, sp.entity_id)
        xml = status_response(
            pending.acs_url,
            pending.request_id,
            SAML_STATUS + "RequestDenied",
            _saml().settings.entity_id,
            _saml().identity,
            top=SAML.STATUS_REQUESTER,
            message="The person did not allow the application.",
        )
        return _post_form(sp.name, pending.acs_url, xml, pending.relay_state)
    _idp().consents.remember(sign_in.employee.username, f"saml:{sp.entity_id}", sp.attributes, int(time.time()))
    log.info("consent given by %s to SAML SP %s", sign_in.employee.username, sp.entity_id)
    return _answer(pending, sign_in, consented=True)


def _post_form(sp_name: str, url: str, xml: bytes, relay_state: str | None) -> Response:
    """A response by the HTTP-POST binding: a form that submits itself (static script) or by its button."""
    fields = {"SAMLResponse": base64.b64encode(xml).decode()}
    if relay_state is not None:
        fields["RelayState"] = relay_state
    return Response(render_template("saml_post.html", sp_name=sp_name, action=url, fields=fields))


# --- single logout ------------------------------------------------------------------------------------


@blueprint.route("/saml/slo", methods=["GET", "POST"])
def slo():
    """An SP's LogoutRequest ends the shared IdP session (both protocols) and is answered at its SLO URL."""
    if "SAMLResponse" in request.values:
        raise Refused("This IdP does not send logout requests, so it expects no logout response.")
    message = receive()
    sp, root = _verified(message, logout=True)
    check_envelope(root, "LogoutRequest", _saml().settings.slo_url, _idp().settings.clock_skew)
    if sp.slo is None:
        raise Refused(f"{sp.name} has no single logout address registered, so it cannot be answered.")
    logout = parse_logout_request(root)
    sign_in = current_sign_in()
    status = SAML.STATUS_SUCCESS
    if sign_in is not None and logout.name_id not in {name_id_value(sign_in.employee, f) for f in sp.name_id_formats}:
        status = SAML.STATUS_REQUESTER  # someone else is signed in here now: leave their session alone
    message_out = logout_response(sp.slo.url, logout.id, status, _saml().settings.entity_id)
    if sp.slo.binding == SAML.BINDING_HTTP_REDIRECT:
        location = signed_redirect_url(sp.slo.url, message_out, message.relay_state, _saml().identity)
        response = redirect(location, code=303)
    else:
        response = _post_form(sp.name, sp.slo.url, signed_post(message_out, _saml().identity), message.relay_state)
    if sign_in is not None and status == SAML.STATUS_SUCCESS:
        end_session(response)
        log.info("single logout of %s requested by %s", sign_in.employee.username, sp.entity_id)
    return response


# --- run-time SP registration -------------------------------------------------------------------------


# An API of its own: its refusals (a method it does not take, a body too large) in its JSON, not the IdP's page.
admin = Blueprint("saml_admin", __name__)
bearer_api_refusals(admin, "saml-admin")


def _api_error(status: int, message: str) -> Response:
    error = {400: "invalid_metadata", 401: "unauthorized", 409: "conflict"}[status]
    return bearer_api_error(status, error, message, realm="saml-admin")


@admin.post("/saml/admin/service-providers")
def register_service_provider():
    """Register an SP from its metadata (request body). Query options: sign=assertion|response|both,
    encrypt_assertion=true|false, allow_idp_initiated=true|false."""
    if not bearer_token_matches(request.headers.get("Authorization"), _saml().settings.admin_token):
        return _api_error(401, "A valid admin bearer token is required.")
    unknown = set(request.args) - {"sign", "encrypt_assertion", "allow_idp_initiated"}
    if unknown:
        return _api_error(400, f"Unknown option(s): {', '.join(sorted(unknown))}.")
    flags = {}
    for name in ("encrypt_assertion", "allow_idp_initiated"):
        value = request.args.get(name, "false")
        if value not in ("true", "false"):
            return _api_error(400, f"{name} must be true or false.")
        flags[name] = value == "true"
    try:
        sp = _saml().service_providers.register(request.get_data(), sign=request.args.get("sign", "assertion"), **flags)
    except MetadataError as error:
        return _api_error(400, str(error))
    except AlreadyConfigured:
        return _api_error(409, "This entity ID is defined in the IdP's config file and cannot be replaced.")
    log.info("SAML SP registered at run time: %s", sp.entity_id)
    return jsonify(entity_id=sp.entity_id), 201
