"""Faults on demand: make the IdP's next answers (or all of them) to one OIDC client or SAML SP wrong in a
chosen way, so that a relying party's tests can prove it refuses them. Off unless configured.

Two switches, the same faults:
- `faults:` in config/idp.yaml, per client ID or SP entity ID, for every answer;
- the admin API, `POST /admin/faults` with `Authorization: Bearer <faults.admin_token>` (no token, no API:
  404), for the next `count` answers or, without a count, every answer until `DELETE /admin/faults`.

Kinds (OIDC and SAML unless said), with their options:
- delay (`seconds`): the answer that late. OIDC: the token endpoint, or the authorization answer with
  `at: authorize`; SAML: the page that posts the Response.
- error: OIDC: `error` (an RFC 6749 / OIDC code) and `description`, at the authorization endpoint, or at the
  token endpoint for its own codes (`at` chooses where a code of both goes); SAML: a Response with `status`
  (Requester, Responder, VersionMismatch), `substatus` (AuthnFailed, RequestDenied, ...) and `description`.
- expired / not_yet_valid: an ID token or assertion whose validity ended ten minutes ago / starts in ten.
- wrong_audience: for another audience (`audience`, or a made-up one).
- unknown_key: signed with a key the IdP never published.
- refused_algorithm: OIDC: signed with `alg` HS256 (default), RS512 or none; SAML: RSA-SHA1 and SHA-1.
- missing (`name`): without that claim (in the ID token and at userinfo for that sign-in) or attribute.
- sign_in_as (`username`, `values`): signed in without the login form, as the directory's `username` or as
  the person `values` describe (OIDC claims; SAML attributes, lists of strings, `subject` for the NameID),
  with `values` set on top.
- thin_id_token (OIDC): an ID token with sub and the protocol claims only; the scope claims are at userinfo.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, current_app, g, has_app_context, jsonify, request

from idp_mock.directory import DirectoryView, Employee
from sso_common.config import ConfigError, Node
from sso_common.records import Record
from sso_common.store import StateStore
from sso_common.web import bearer_api_error, bearer_api_refusals, bearer_token_matches

log = logging.getLogger(__name__)
blueprint = Blueprint("faults", __name__)

KINDS = (
    "delay",
    "error",
    "expired",
    "not_yet_valid",
    "wrong_audience",
    "unknown_key",
    "refused_algorithm",
    "missing",
    "sign_in_as",
    "thin_id_token",
)
OIDC_TOKEN_ERRORS = ("invalid_client", "invalid_grant", "unsupported_grant_type")
OIDC_ERRORS = (
    "invalid_request",
    "unauthorized_client",
    "access_denied",
    "unsupported_response_type",
    "invalid_scope",
    "server_error",
    "temporarily_unavailable",
    "interaction_required",
    "login_required",
    "account_selection_required",
    "consent_required",
    *OIDC_TOKEN_ERRORS,
)
OIDC_REFUSED_ALGORITHMS = ("HS256", "RS512", "none")
SAML_STATUSES = ("Requester", "Responder", "VersionMismatch")
SAML_SUBSTATUSES = (
    "AuthnFailed",
    "InvalidAttrNameOrValue",
    "InvalidNameIDPolicy",
    "NoAuthnContext",
    "NoAvailableIDP",
    "NoPassive",
    "NoSupportedIDP",
    "PartialLogout",
    "ProxyCountExceeded",
    "RequestDenied",
    "RequestUnsupported",
    "RequestVersionDeprecated",
    "RequestVersionTooHigh",
    "RequestVersionTooLow",
    "ResourceNotRecognized",
    "TooManyResponses",
    "UnknownAttrProfile",
    "UnknownPrincipal",
    "UnsupportedBinding",
)
SHIFT_SECONDS = 600  # expired / not yet valid by this much: beyond any sensible clock skew
MAX_DELAY = 120
STORE_TTL = 30 * 24 * 3600
FAULT_KIND, INDEX_KIND, USED_KIND = "fault", "fault_index", "fault_used"


@dataclass(frozen=True)
class Fault(Record):
    """One fault for one client or SP (its `target`: "oidc:CLIENT_ID" or "saml:ENTITY_ID")."""

    target: str
    kind: str
    id: str = ""
    count: int | None = None  # None: every answer
    seconds: float = 0.0  # delay
    at: str = ""  # OIDC delay and error: "authorize" or "token"
    error: str = ""  # OIDC error code
    description: str = ""  # OIDC error_description, SAML StatusMessage
    status: str = ""  # SAML top-level status
    substatus: str = ""  # SAML second-level status
    audience: str = ""  # wrong_audience
    alg: str = ""  # refused_algorithm (OIDC)
    name: str = ""  # missing: claim or attribute
    username: str = ""  # sign_in_as: a person of the directory
    values: dict[str, Any] = field(default_factory=dict)  # sign_in_as: claims, or attributes

    @property
    def protocol(self) -> str:
        return self.target.split(":", 1)[0]

    @property
    def phase(self) -> str:
        """Where it is used up: "authorize", "token" or "id_token" for OIDC; "answer" for SAML."""
        if self.protocol == "saml":
            return "answer"
        if self.kind in ("delay", "error"):
            return self.at or ("token" if self.kind == "delay" or self.error in OIDC_TOKEN_ERRORS else "authorize")
        # a missing claim is missing from all the sign-in gives (ID token and userinfo): decided with the code
        return "authorize" if self.kind in ("sign_in_as", "missing") else "id_token"


@dataclass(frozen=True)
class FaultSettings:
    admin_token: str = field(default="", repr=False)  # empty: no admin API
    configured: dict[str, tuple[Fault, ...]] = field(default_factory=dict)  # target -> faults for every answer


# --- validation, shared by idp.yaml and the admin API --------------------------------------------------


def parse_fault(node: Node, target: str) -> Fault:
    """A fault from its mapping; ConfigError naming the key when it is wrong."""
    protocol = target.split(":", 1)[0]
    kind_node = node.child("kind")
    kind = kind_node.string()
    if kind not in KINDS:
        raise kind_node.error(f"unknown fault {kind!r} (use {', '.join(KINDS)})")
    if kind == "thin_id_token" and protocol != "oidc":
        raise kind_node.error("thin_id_token is for OIDC clients only")
    allowed = {
        "delay": ("seconds", "at"),
        "error": ("error", "description", "at") if protocol == "oidc" else ("status", "substatus", "description"),
        "wrong_audience": ("audience",),
        "refused_algorithm": ("alg",) if protocol == "oidc" else (),
        "missing": ("name",),
        "sign_in_as": ("username", "values"),
    }.get(kind, ())
    node.only_keys("kind", "count", *allowed)
    values: dict[str, Any] = {"target": target, "kind": kind}
    count = node.child("count", None)
    if count.value is not None:
        if not isinstance(count.value, int) or isinstance(count.value, bool):  # "2" was taken as 2
            raise count.error("a whole number of answers")
        values["count"] = count.integer(1, 100000)
    if kind == "delay":
        seconds = node.child("seconds")
        if not isinstance(seconds.value, (int, float)) or isinstance(seconds.value, bool):
            raise seconds.error("must be a number of seconds")
        if not 0 < seconds.value <= MAX_DELAY:
            raise seconds.error(f"must be more than 0 and at most {MAX_DELAY}")
        values["seconds"] = float(seconds.value)
    if "at" in allowed and node.child("at", None).value is not None:
        if protocol != "oidc":
            raise node.child("at").error("is for OIDC faults only")
        values["at"] = node.child("at").string("authorize|token", "authorize or token")
    if kind == "error" and protocol == "oidc":
        code = node.child("error").string()
        if code not in OIDC_ERRORS:
            raise node.child("error").error(f"unknown OIDC error {code!r} (use {', '.join(OIDC_ERRORS)})")
        if values.get("at") == "authorize" and code in OIDC_TOKEN_ERRORS:
            raise node.child("at").error(f"{code} is an error of the token endpoint")
        values["error"] = code
    if kind == "error" and protocol == "saml":
        values["status"] = node.child("status", "Responder").string()
        if values["status"] not in SAML_STATUSES:
            raise node.child("status").error(f"use one of {', '.join(SAML_STATUSES)}")
        substatus = node.child("substatus", None)
        if substatus.value is not None:
            if substatus.string() not in SAML_SUBSTATUSES:
                raise substatus.error(f"use one of {', '.join(SAML_SUBSTATUSES)}")
            values["substatus"] = substatus.value
    if "description" in allowed and node.child("description", None).value is not None:
        values["description"] = node.child("description").string(
            r"[\x20-\x21\x23-\x5b\x5d-\x7e]{1,200}",
            "printable ASCII without quotes or backslashes, at most 200 characters",
        )
    if kind == "wrong_audience" and node.child("audience", None).value is not None:
        values["audience"] = node.child("audience").string(r"\S{1,512}", "a client ID or audience URI")
    if kind == "refused_algorithm" and protocol == "oidc":
        values["alg"] = node.child("alg", "HS256").string()
        if values["alg"] not in OIDC_REFUSED_ALGORITHMS:
            raise node.child("alg").error(f"use one of {', '.join(OIDC_REFUSED_ALGORITHMS)}")
    if kind == "missing":
        values["name"] = node.child("name").string(r"[\w:./-]{1,256}", "a claim or attribute name")
    if kind == "sign_in_as":
        username = node.child("username", None)
        if username.value is not None:
            values["username"] = username.string(r"[a-z][a-z0-9._-]{0,63}", "a username")
        values["values"] = _person_values(node.child("values", {}), protocol)
        if not values.get("username") and not values["values"].get("sub" if protocol == "oidc" else "email"):
            raise node.error(
                "sign_in_as needs a username of the directory, or values with "
                + ("sub and email" if protocol == "oidc" else "an email attribute")
            )
    return Fault(**values)


def _person_values(node: Node, protocol: str) -> dict[str, Any]:
    values = {}
    for name, value_node in node.items():
        if len(name) > 256:
            raise value_node.error("name is too long")
        value = value_node.value
        if protocol == "saml":  # attributes: lists of strings (a single string is one value)
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
                raise value_node.error("must be a string or a list of strings")
            values[name] = list(items)
        else:  # claims: any JSON value
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise value_node.error("must be a JSON value") from None
            values[name] = value
    return values


def parse_fault_settings(node: Node, issuer: str) -> FaultSettings:
    node.only_keys("admin_token", "oidc_clients", "saml_service_providers")
    token = node.child("admin_token", None)
    configured: dict[str, tuple[Fault, ...]] = {}
    for section, protocol in (("oidc_clients", "oidc"), ("saml_service_providers", "saml")):
        for name, faults_node in node.child(section, {}).items():
            target = f"{protocol}:{name}"
            configured[target] = tuple(
                _configured(parse_fault(element, target), element) for element in faults_node.elements()
            )
    return FaultSettings(admin_token=token.secret(issuer) if token.value else "", configured=configured)


def _configured(fault: Fault, node: Node) -> Fault:
    if fault.count is not None:
        raise node.child("count").error("a fault in the config file applies to every answer: no count")
    return fault


# --- at run time -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultPerson(Employee):
    """Someone a sign_in_as fault signs in: a directory person or made up, with claims set on top."""

    claims: dict[str, Any] = field(default_factory=dict)


def person(directory: DirectoryView, fault: Fault) -> FaultPerson | None:
    """The person a sign_in_as fault signs in (None: it names a username the directory does not have)."""
    base = directory.find(fault.username) if fault.username else None
    if fault.username and base is None:
        return None
    v = fault.values
    if fault.protocol == "oidc":
        subject, email = v.get("sub"), v.get("email")
        name, username, groups = v.get("name"), v.get("preferred_username"), v.get("groups")
        department = v.get("department")
    else:
        first = {key: items[0] if items else None for key, items in v.items()}
        subject, email, name, department = (
            first.get("subject"),
            first.get("email"),
            first.get("displayName"),
            first.get("department"),
        )
        username, groups = None, v.get("groups")
    email = str(email) if email is not None else base.email if base else ""
    return FaultPerson(
        username=str(username or (base.username if base else email.split("@")[0] or subject)),
        subject=str(subject or (base.subject if base else str(uuid.uuid5(uuid.NAMESPACE_URL, email)))),
        email=email,
        name=str(name or (base.name if base else email)),
        department=str(department or (base.department if base else "")),
        groups=tuple(str(g) for g in groups) if isinstance(groups, list) else (base.groups if base else ()),
        password_hash="",
        claims=dict(v) if fault.protocol == "oidc" else {},
    )


class Faults:
    """The faults that apply to a client or SP: the configured ones, then those added through the API
    (kept in the state store, so every worker sees them)."""

    def __init__(self, settings: FaultSettings | None, store: StateStore):
        self.settings = settings or FaultSettings()
        self.store = store

    def _added(self, target: str) -> list[Fault]:
        """The faults added for `target`, read from the store once per request (an authorization asks at two
        moments, a token answer at two); outside a request, every time."""
        cache = g.setdefault("faults_added", {}) if has_app_context() else None
        if cache is not None and target in cache:
            return cache[target]
        record = self.store.get(FAULT_KIND, target)
        faults = [Fault.from_record(item) for item in record["faults"]] if record else []
        if cache is not None:
            cache[target] = faults
        return faults

    def _forget(self) -> None:
        if has_app_context():
            g.pop("faults_added", None)

    def active(self, target: str, phase: str, *, consume: bool = True) -> list[Fault]:
        """The faults for this answer of `target` used up at `phase`. A counted fault is used up once per
        answer (atomically: two workers never both take its last use)."""
        found = [fault for fault in self.settings.configured.get(target, ()) if fault.phase == phase]
        for fault in self._added(target):
            if fault.phase != phase:
                continue
            if fault.count is not None:
                if not consume:
                    continue
                if self.store.incr(USED_KIND, fault.id, STORE_TTL) > fault.count:
                    continue
            found.append(fault)
        if found:
            log.info("faults for %s at %s: %s", target, phase, ", ".join(fault.kind for fault in found))
        return found

    def pending_kinds(self, target: str, phase: str) -> set[str]:
        """The kinds of the faults the next answer of `target` at `phase` would get, using none up."""
        kinds = {fault.kind for fault in self.settings.configured.get(target, ()) if fault.phase == phase}
        for fault in self._added(target):
            if fault.phase == phase and (
                fault.count is None or self.store.incr(USED_KIND, fault.id, STORE_TTL, 0) < fault.count
            ):
                kinds.add(fault.kind)
        return kinds

    def add(self, fault: Fault) -> Fault:
        fault = Fault.from_record({**fault.to_record(), "id": secrets.token_hex(8)})
        faults = self._added(fault.target) + [fault]
        self.store.put(FAULT_KIND, fault.target, {"faults": [f.to_record() for f in faults]}, STORE_TTL)
        self._forget()
        targets = self._targets()
        if fault.target not in targets:
            self.store.put(INDEX_KIND, "targets", {"targets": [*targets, fault.target]}, STORE_TTL)
        return fault

    def _targets(self) -> list[str]:
        record = self.store.get(INDEX_KIND, "targets")
        return list(record["targets"]) if record else []

    def listed(self) -> list[dict]:
        """Every fault added through the API, with the uses left of the counted ones."""
        listing = []
        for target in self._targets():
            for fault in self._added(target):
                entry = fault.to_record()
                if fault.count is not None:
                    entry["remaining"] = max(0, fault.count - self.store.incr(USED_KIND, fault.id, STORE_TTL, 0))
                listing.append(entry)
        return listing

    def remove(self, fault_id: str | None = None) -> int:
        """Remove one fault added through the API (by ID), or all of them; returns how many went."""
        removed = 0
        for target in self._targets():
            faults = self._added(target)
            kept = [fault for fault in faults if fault_id is not None and fault.id != fault_id]
            removed += len(faults) - len(kept)
            if kept:
                self.store.put(FAULT_KIND, target, {"faults": [f.to_record() for f in kept]}, STORE_TTL)
            else:
                self.store.delete(FAULT_KIND, target)
        if fault_id is None:
            self.store.delete(INDEX_KIND, "targets")
        self._forget()
        return removed


# --- the admin API -----------------------------------------------------------------------------------


def _faults() -> Faults:
    return current_app.extensions["idp"].faults


_error = functools.partial(bearer_api_error, realm="faults")
bearer_api_refusals(blueprint, "faults")


@blueprint.before_request
def _authorized():
    token = _faults().settings.admin_token
    if not token:
        return _error(404, "not_found", "The faults admin API is off: set faults.admin_token in idp.yaml.")
    if not bearer_token_matches(request.headers.get("Authorization"), token):
        return _error(401, "unauthorized", "A valid faults admin bearer token is required.")
    return None


@blueprint.post("/admin/faults")
def add_fault():
    """Body: {"client_id": ID} or {"sp": ENTITY_ID}, "kind", optional "count", and the kind's options."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _error(400, "invalid_request", "The body must be a JSON object.")
    targets = [f"oidc:{body.pop('client_id')}" if "client_id" in body else None]
    targets.append(f"saml:{body.pop('sp')}" if "sp" in body else None)
    chosen = [target for target in targets if target]
    if len(chosen) != 1 or not re.fullmatch(r"(oidc|saml):\S{1,1024}", chosen[0]):
        return _error(400, "invalid_request", 'Name one target: "client_id" (OIDC) or "sp" (SAML entity ID).')
    problem = _unknown_target(chosen[0])
    if problem:
        return _error(400, "invalid_request", problem)
    try:
        fault = parse_fault(Node("request", "", body), chosen[0])
    except ConfigError as error:
        return _error(400, "invalid_request", f"{error.key}: {error.problem}")
    directory = current_app.extensions["idp"].directory
    if fault.kind == "sign_in_as" and fault.username and directory.find(fault.username) is None:
        return _error(400, "invalid_request", f"username: the directory has no {fault.username}")
    fault = _faults().add(fault)
    log.info("fault added for %s: %s (%s)", fault.target, fault.kind, fault.count or "every answer")
    return jsonify(fault.to_record()), 201


def _unknown_target(target: str) -> str | None:
    """Why a fault for `target` could never apply (a client or SP the IdP does not know), or None. Said now:
    otherwise the test that added it finds out only when its sign-in works as if there were no fault."""
    protocol, _, name = target.partition(":")
    if protocol == "oidc" and current_app.extensions["oidc"].query_client(name) is None:
        return "client_id: no client of this IdP has that ID"
    if protocol == "saml" and not current_app.extensions["saml"].service_providers.known(name):
        return "sp: no service provider of this IdP has that entity ID"
    return None


@blueprint.get("/admin/faults")
def list_faults():
    return jsonify(faults=_faults().listed())


@blueprint.delete("/admin/faults")
def clear_faults():
    return jsonify(removed=_faults().remove())


@blueprint.delete("/admin/faults/<fault_id>")
def remove_fault(fault_id: str):
    removed = _faults().remove(fault_id)
    if not removed:
        return _error(404, "not_found", "There is no fault with that ID.")
    return jsonify(removed=removed)
