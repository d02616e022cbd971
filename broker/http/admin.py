"""Administration: the audit trail, for members of the admin group only.

The filters are a GET form (person, event, outcome, channel, time range: nothing secret), read by
`broker.core.audit.audit_query`; the JSON lines export takes the same query string and exports
exactly the filtered view, oldest first.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from flask import Blueprint, Response, render_template, request

from broker.core.audit import CHANNELS, EVENT_TYPES, FILTER_FIELDS, OUTCOMES, BadFilter, audit_query, form_time
from broker.http.context import signed_in, signed_in_session, state
from sso_common.web import UserFacingError

blueprint = Blueprint("admin", __name__, url_prefix="/admin")

PAGE_SIZE = 200


def _require_admin():
    if state().settings.admin_group not in signed_in_session().identity.groups:
        raise UserFacingError("The audit trail is for administrators.", 403, "Access denied")


def _filters() -> dict[str, str]:
    """The filters as given (kept in the form and the export link), capped in length."""
    return {name: request.args.get(name, "")[:300] for name in FILTER_FIELDS}


@blueprint.get("/audit")
@signed_in
def audit_page():
    _require_admin()
    filters = _filters()
    context = {"filters": filters, "event_types": EVENT_TYPES, "outcomes": OUTCOMES, "channels": CHANNELS}
    try:
        query = audit_query(filters)
    except BadFilter as bad:
        return render_template("audit.html", events=None, problem=bad, **context), 400
    given = {name: value for name, value in filters.items() if value.strip()}
    # A date alone (2026-01-31) is shown as the datetime-local field can hold it, so resending keeps it.
    context["filters"] = {**filters, "since": form_time(query.since), "until": form_time(query.until)}
    return render_template(
        "audit.html",
        events=state().audit.query(query, limit=PAGE_SIZE),
        page_size=PAGE_SIZE,
        problem=None,
        filtered=bool(given),
        export_url="/admin/audit.jsonl" + (f"?{urlencode(given)}" if given else ""),
        **context,
    )


@blueprint.get("/audit.jsonl")
@signed_in
def audit_export():
    _require_admin()
    try:
        query = audit_query(_filters())
    except BadFilter as bad:
        raise UserFacingError(bad.message, 400, "Bad filter") from None
    lines = (json.dumps(event, sort_keys=True) + "\n" for event in state().audit.export() if query.matches(event))
    return Response(
        lines, mimetype="application/x-ndjson", headers={"Content-Disposition": 'attachment; filename="audit.jsonl"'}
    )
