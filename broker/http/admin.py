"""Administration, for members of the admin group only: the audit trail, and the people page (find a person,
revoke their sessions and credentials).

The filters are a GET form (person, event, outcome, channel, time range: nothing secret), read by
`broker.core.audit.audit_query`; the JSON lines export takes the same query string and exports
exactly the filtered view, oldest first.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from flask import Blueprint, Response, flash, get_flashed_messages, redirect, render_template, request

from broker.core.audit import (
    CHANNELS,
    EVENT_TYPES,
    FILTER_FIELDS,
    MAX_PERSON_LENGTH,
    OUTCOMES,
    BadFilter,
    audit_query,
    form_time,
)
from broker.core.sessions import session_reference
from broker.http.context import signed_in, signed_in_session, state
from sso_common.store import PeopleQuery, Person
from sso_common.web import UserFacingError, check_csrf

blueprint = Blueprint("admin", __name__, url_prefix="/admin")

PAGE_SIZE = 200


def _require_admin():
    if state().settings.admin_group not in signed_in_session().identity.groups:
        raise UserFacingError("The administration pages are for administrators.", 403, "Access denied")


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


# --- people: find one, revoke their sessions and credentials ------------------------------------------------

PEOPLE_PAGE = 50


@blueprint.get("/people")
@signed_in
def people_page():
    """The directory's people, found by address or subject; each with a button to revoke them."""
    _require_admin()
    wanted = request.args.get("person", "")[:MAX_PERSON_LENGTH].strip()
    mine = _notices_of_this_sign_in()
    flashed = [entry[1] for entry in get_flashed_messages(with_categories=True) if entry[0] == mine]
    return _people(wanted, str(flashed[0]) if flashed else None)


def _people(wanted: str, notice: str | None) -> str:
    directory = state().people.directory
    if not wanted:
        found = directory.find(limit=PEOPLE_PAGE)
    else:
        found = _with_address(wanted) if "@" in wanted else []
        found = found or directory.find(PeopleQuery(subject=wanted), limit=PEOPLE_PAGE)  # a subject may hold an @
    return render_template(
        "people.html", people=found, person=wanted, notice=notice, page_size=PEOPLE_PAGE, total=directory.count()
    )


@blueprint.post("/people/revoke")
@signed_in
def revoke_person():
    """Revoke one person: every portal session and command-line sign-in they hold ends at its next use, and their
    AWS credentials issued so far are denied (broker.core.revocation). Audited with the administrator's name."""
    check_csrf()
    _require_admin()
    upstream, subject = request.form.get("upstream", "")[:64], request.form.get("subject", "")[:256]
    person = state().people.directory.get(upstream, subject)
    revocations = state().revocations
    if person is None or revocations is None:
        raise UserFacingError("There is no such person in the directory.", 404, "Not found")
    admin = signed_in_session().identity
    revocations.revoke(upstream, subject, f"revoked by an administrator ({admin.email})", admin.email)
    who = person.email or person.subject
    notice = (
        f"Revoked {who} as {upstream} knows them: those sessions and command-line sign-ins end now, and the AWS "
        "credentials issued to this address so far are denied."
    )
    elsewhere = sorted(
        {
            other.upstream
            for other in (_with_address(person.email) if person.email else [])
            if (other.upstream, other.subject) != (upstream, subject)
        }
    )
    if elsewhere:  # a person is (upstream, subject): the same address through another upstream is not revoked
        notice += (
            f" The same address signs in through {', '.join(elsewhere)} too, and those sign-ins go on: revoke that"
            " row as well if it is the same person."
        )
    flash(notice, _notices_of_this_sign_in())  # on the page the browser is sent to: reloading it revokes nothing
    return redirect(f"/admin/people?{urlencode({'person': who})}", code=303)


def _with_address(email: str) -> list[Person]:
    return state().people.directory.find(PeopleQuery(email=email.lower()), limit=PEOPLE_PAGE)


def _notices_of_this_sign_in() -> str:
    """The category a notice is flashed under: this sign-in's, not a later one's in the same browser. The cookie
    holding it is signed, not encrypted: the session's one-way reference names it, never its ID."""
    return session_reference(signed_in_session().id)
