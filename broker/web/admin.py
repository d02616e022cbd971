"""Administration: the audit trail, for members of the admin group only."""

from __future__ import annotations

import json

from flask import Blueprint, Response, render_template

from sso_common.web import UserFacingError

from . import broker, current_session, signed_in

blueprint = Blueprint("admin", __name__, url_prefix="/admin")


def _require_admin():
    if broker().settings.admin_group not in current_session().identity.groups:
        raise UserFacingError("The audit trail is for administrators.", 403, "Access denied")


@blueprint.get("/audit")
@signed_in
def audit_page():
    _require_admin()
    return render_template("audit.html", events=broker().audit.recent(limit=200))


@blueprint.get("/audit.jsonl")
@signed_in
def audit_export():
    _require_admin()
    lines = (json.dumps(event, sort_keys=True) + "\n" for event in broker().audit.export())
    return Response(lines, mimetype="application/x-ndjson",
                    headers={"Content-Disposition": 'attachment; filename="audit.jsonl"'})
