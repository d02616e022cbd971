"""Administration: the audit trail, for members of the admin group only."""

from __future__ import annotations

import json

from flask import Blueprint, Response, render_template

from broker.http.context import signed_in, signed_in_session, state
from sso_common.web import UserFacingError

blueprint = Blueprint("admin", __name__, url_prefix="/admin")


def _require_admin():
    if state().settings.admin_group not in signed_in_session().identity.groups:
        raise UserFacingError("The audit trail is for administrators.", 403, "Access denied")


@blueprint.get("/audit")
@signed_in
def audit_page():
    _require_admin()
    return render_template("audit.html", events=state().audit.query(limit=200))


@blueprint.get("/audit.jsonl")
@signed_in
def audit_export():
    _require_admin()
    lines = (json.dumps(event, sort_keys=True) + "\n" for event in state().audit.export())
    return Response(
        lines, mimetype="application/x-ndjson", headers={"Content-Disposition": 'attachment; filename="audit.jsonl"'}
    )
