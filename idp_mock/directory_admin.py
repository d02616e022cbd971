"""The directory admin API of the mock IdP: change its directory at run time, and see how far the SCIM pushes are.

Off unless `provisioning.admin_token` is set in idp.yaml (404 otherwise, as the faults API); every call needs
`Authorization: Bearer <admin_token>` (401 otherwise). JSON in, JSON out, errors as `error`/`error_description`.

    GET    /admin/directory/users/<username>                 the user as the directory has them now
    POST   /admin/directory/users                            add: {"username", "email", "name", "password"
                                                             (hashed here, never stored), "department",
                                                             "groups", "totp_secret"}
    DELETE /admin/directory/users/<username>                 delete
    POST   /admin/directory/users/<username>/disable         disable (sign-ins refused; pushed as active=false)
    POST   /admin/directory/users/<username>/enable          enable
    PUT    /admin/directory/groups/<group>/members/<username>     add a member
    DELETE /admin/directory/groups/<group>/members/<username>     remove a member
    GET    /admin/directory/sync                             per SCIM target: pushed position, pending, last error
    POST   /admin/directory/sync                             retry every target now (whatever its backoff)

A change answers 202 with its log position: it is stored (every worker sees it at its next request, and it
survives a restart) and on its way to every SCIM target (idp_mock.scim_push). `idp-mock directory ...` makes the
same changes from a shell (idp_mock/cli.py).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from idp_mock.directory import ChangeRefused, Employee
from idp_mock.passwords import hash_password
from idp_mock.scim_push import ScimTarget, push_now, sync_status
from sso_common.config import URL_PATTERN, Node
from sso_common.web import bearer_api_error, bearer_api_refusals, bearer_token_matches

log = logging.getLogger(__name__)
blueprint = Blueprint("directory_admin", __name__, url_prefix="/admin/directory")

MIN_PASSWORD = 12
MAX_PASSWORD = 1024


@dataclass(frozen=True)
class ProvisioningSettings:
    admin_token: str = field(default="", repr=False)  # empty: no directory admin API
    targets: tuple[ScimTarget, ...] = ()
    push: bool = True  # False: no pusher runs (the changes are kept, and pushed by none)


def parse_provisioning(node: Node, issuer: str) -> ProvisioningSettings:
    """`provisioning:` of idp.yaml: the admin API's token and the SCIM targets ({name, url, token})."""
    node.only_keys("admin_token", "push", "targets")
    token = node.child("admin_token", None)
    targets: list[ScimTarget] = []
    for element in node.child("targets", []).elements():
        element.only_keys("name", "url", "token")
        name = element.child("name").string(r"[a-z0-9][a-z0-9-]{0,62}", "a name (a-z, 0-9, -)")
        if any(target.name == name for target in targets):
            raise element.child("name").error(f"{name!r} names another target too")
        targets.append(
            ScimTarget(
                name=name,
                url=element.child("url").string(URL_PATTERN, "an http(s) URL").rstrip("/"),
                token=element.child("token").secret(issuer, 24),
            )
        )
    return ProvisioningSettings(
        admin_token=token.secret(issuer) if token.value else "",
        targets=tuple(targets),
        push=node.child("push", True).boolean(),
    )


def _idp() -> Any:
    return current_app.extensions["idp"]


_error = functools.partial(bearer_api_error, realm="directory")
bearer_api_refusals(blueprint, "directory")


@blueprint.before_request
def _authorized():
    settings = _idp().settings.provisioning
    token = settings.admin_token if settings else ""
    if not token:
        return _error(404, "not_found", "The directory admin API is off: set provisioning.admin_token in idp.yaml.")
    if not bearer_token_matches(request.headers.get("Authorization"), token):
        return _error(401, "unauthorized", "A valid directory admin bearer token is required.")
    return None


def _user(employee: Employee) -> dict[str, Any]:
    return {
        "username": employee.username,
        "subject": employee.subject,
        "email": employee.email,
        "name": employee.name,
        "department": employee.department,
        "groups": list(employee.groups),
        "disabled": employee.disabled,
        "mfa": employee.mfa_required,
    }


def _change(change: dict[str, Any]) -> Response | tuple[Response, int]:
    try:
        position, record = _idp().live_directory.change(change)
    except ChangeRefused as refusal:
        return _error(409 if "already" in str(refusal) else 400, "invalid_change", str(refusal))
    _idp().wake_pusher()
    log.info("directory change %s (position %d)", record["op"], position)
    return jsonify(position=position, change={k: v for k, v in record.items() if k != "user"}), 202


@blueprint.get("/users/<username>")
def get_user(username: str):
    employee = _idp().live_directory.find(username)
    if employee is None:
        return _error(404, "not_found", "There is no such user.")
    return jsonify(_user(employee))


@blueprint.post("/users")
def add_user():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _error(400, "invalid_request", "The body must be a JSON object.")
    password = body.pop("password", None)
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        return _error(400, "invalid_change", f"password: {MIN_PASSWORD} to {MAX_PASSWORD} characters are required")
    body.pop("password_hash", None)  # only a password given here is hashed here
    return _change({"op": "add_user", "user": {**body, "password_hash": hash_password(password)}})


@blueprint.delete("/users/<username>")
def delete_user(username: str):
    return _change({"op": "delete_user", "username": username})


@blueprint.post("/users/<username>/<action>")
def set_enabled(username: str, action: str):
    if action not in ("disable", "enable"):
        return _error(404, "not_found", "Use .../disable or .../enable.")
    return _change({"op": action, "username": username})


@blueprint.route("/groups/<group>/members/<username>", methods=["PUT", "DELETE"])
def membership(group: str, username: str):
    operation = "add_member" if request.method == "PUT" else "remove_member"
    return _change({"op": operation, "username": username, "group": group})


@blueprint.post("/sync")
def retry_now():
    """Retry every target now, whatever its backoff (after the portal came up, say); answers the status."""
    push_now(_idp().store)
    _idp().wake_pusher()
    return status()


@blueprint.get("/sync")
def status():
    idp = _idp()
    targets = list(idp.settings.provisioning.targets) if idp.settings.provisioning else []
    return jsonify(sync_status(idp.store, idp.live_directory.log, targets))
