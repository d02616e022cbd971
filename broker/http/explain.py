"""The "How did I get here?" pages, their JSON, and the glue that keeps each story.

- `GET /explain`: the signed-in person's story (a redirect to it).
- `GET /explain/<id>`: a story as a page; `GET /explain/<id>.json` the same as JSON
  (`/explain.schema.json`, checked by the tests). Readable by the person it is about, by members of the
  admin group, and, for a refusal before any session existed, by the browser that was refused (its
  `portal_explain` cookie); anyone else gets the same 404 as for an unknown address.
- `GET /token/explain` (the sso API's bearer token): the story behind a command-line sign-in, for
  `broker-login --explain`.

The login glue (broker/http/login.py) calls `conclude` when a sign-in ends either way, the portal and the sso
API call `record_issuance` after each credential request; both with what the validating code recorded in
the request's `broker.core.evidence` recorder. The role's policies (IAM) and the workload path (the
instance's metadata service) are read when a story is shown, not when it is made.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, after_this_request, current_app, g, jsonify, redirect, render_template, request

from broker.aws.evidence import assertion_section, declared_workloads, iam_reader, instance_story, policies_section
from broker.aws.provisioning import trust_policy
from broker.core import evidence
from broker.core.audit import PORTAL_CHANNEL
from broker.core.evidence import Section
from broker.core.explain import (
    REFUSAL_LIFETIME,
    Explanation,
    Explanations,
    IssuanceStory,
    StoryReference,
    document,
    issuance_story,
    may_read,
    new_binding,
    shown_issuance,
    sign_in_story,
)
from broker.core.identity import Identity
from broker.core.naming import provider_arn
from broker.core.sessions import PortalSession, session_reference
from broker.http.aws_wire import ApiError, install_error_handlers
from broker.http.context import cookie_options, current_session, state
from broker.identity_center.grants import GRANT_KIND
from sso_common.web import UserFacingError

log = logging.getLogger(__name__)
blueprint = Blueprint("explain", __name__)
api = Blueprint("explain_api", __name__)
install_error_handlers(api)

EXPLAIN_COOKIE = "portal_explain"  # a refused browser's proof that a refusal's story is its own
SCHEMA_FILE = Path(__file__).resolve().parent.parent / "static" / "explanation.schema.json"
BEARER_HEADER = "x-amz-sso_bearer_token"
POLICY_CACHE_SECONDS = 60
NOT_YOURS = "There is no explanation at this address for you: it has expired, or it is about someone else."


def stories() -> Explanations:
    extensions = current_app.extensions
    if "explanations" not in extensions:
        extensions["explanations"] = Explanations(state().store)
    return extensions["explanations"]


def link(story: Explanation | StoryReference) -> str:
    return f"/explain/{story.id}"


# --- keeping stories (called by the login, portal and sso API glue) ----------------------------------


def so_far(upstream_id: str, identity: Identity, ttl: float) -> Explanation | None:
    """The story of a SAML sign-in verified at the ACS, kept with its parked login (not in the store: only the
    finish reads it) until its browser is back."""
    try:
        return _story(upstream_id, identity, None, decided=False, lifetime=ttl + 60)
    except Exception:  # noqa: BLE001 - the explanation must never stop a sign-in
        log.exception("the sign-in's explanation could not be made")
        return None


def conclude(
    upstream_id: str,
    identity: Identity | None,
    reason: str | None,
    *,
    session: PortalSession | None = None,
    earlier: Explanation | None = None,
) -> Explanation | None:
    """Keep the story of a sign-in that just ended, signed in (`session`) or refused (`reason`), and offer it:
    the refusal page links to it (and this browser gets the cookie that lets it read it)."""
    try:
        cookie = request.cookies.get(EXPLAIN_COOKIE)
        binding = "" if session is not None else (cookie if cookie and 20 <= len(cookie) <= 100 else new_binding())
        lifetime = (session.expires - time.time()) if session is not None else REFUSAL_LIFETIME
        story = _story(upstream_id, identity, reason, binding=binding, lifetime=lifetime, earlier=earlier)
        stories().save(story)
        if session is not None:
            stories().link_session(session.id, story)
    except Exception:  # noqa: BLE001 - the explanation must never stop a sign-in, nor hide its refusal
        log.exception("the sign-in's explanation could not be kept")
        return None
    g.explanation_url = link(story)
    if binding and binding != cookie:

        @after_this_request
        def give_cookie(response: Response) -> Response:
            # Path /: the next refusal in this browser (an OIDC callback) reuses it, so each stays readable.
            response.set_cookie(EXPLAIN_COOKIE, binding, **cookie_options(REFUSAL_LIFETIME))
            return response

    return story


def _story(
    upstream_id: str,
    identity: Identity | None,
    reason: str | None,
    *,
    lifetime: float,
    binding: str = "",
    earlier: Explanation | None = None,
    decided: bool = True,
) -> Explanation:
    portal = state()
    connector = portal.connectors.get(upstream_id)
    return sign_in_story(
        evidence.recorder(),
        upstream_id=upstream_id,
        upstream_name=connector.display_name if connector else upstream_id,
        protocol=connector.protocol if connector else "",
        identity=identity,
        access=portal.settings.access,
        reason=reason,
        lifetime=max(1.0, lifetime),
        channel=PORTAL_CHANNEL,
        binding=binding,
        earlier=earlier,
        decided=decided,
    )


def story_of_session(session: PortalSession) -> Explanation | None:
    try:
        return stories().of_session(session.id)
    except Exception:  # noqa: BLE001
        log.exception("the session's explanation could not be read")
        return None


def story_of_grant(grant_id: str) -> Explanation | None:
    """The story of the portal session that approved a command-line sign-in (its grant's reference)."""
    grant = state().store.get(GRANT_KIND, grant_id)
    return stories().of_session_reference(grant.get("session")) if grant else None


def story_reference(*, session: PortalSession | None = None, grant_id: str | None = None) -> StoryReference | None:
    """The story to add a credential request to (`record_issuance`), of a portal session or of the session that
    approved a command-line grant, without reading the story itself."""
    try:
        if session is not None:
            return stories().reference_of_session_reference(session_reference(session.id))
        grant = state().store.get(GRANT_KIND, grant_id) if grant_id else None
        return stories().reference_of_session_reference(grant.get("session")) if grant else None
    except Exception:  # noqa: BLE001 - never stop an issuance for its explanation
        log.exception("the session's explanation could not be read")
        return None


def record_issuance(
    story: Explanation | StoryReference | None,
    *,
    channel: str,
    account_id: str,
    permission_set: str,
    outcome: str,
    reason: str = "",
) -> str | None:
    """Add one credential request, as the request's recorder holds it, to `story`; its link, or None."""
    if story is None:
        return None
    try:
        recorded = evidence.recorder()
        role_arn = str(recorded.notes.get("role_arn", ""))
        issuance = issuance_story(
            recorded,
            access=state().settings.access,
            channel=channel,
            account_id=account_id,
            permission_set=permission_set,
            role_name=role_arn.rsplit("/", 1)[-1] if role_arn else "",
            role_arn=role_arn,
            outcome=outcome,
            reason=reason,
        )
        stories().add_issuance(story, issuance)
    except Exception:  # noqa: BLE001 - never stop an issuance for its explanation
        log.exception("the credential request's explanation could not be kept")
        return None
    return f"{link(story)}#way-to-aws"


def offer(url: str | None) -> None:
    """Link a page about to be shown (a refusal, say) to its explanation."""
    if url:
        g.explanation_url = url


# --- showing stories ----------------------------------------------------------------------------------


def _readable(story_id: str) -> Explanation:
    story = stories().load(story_id)
    session = current_session()
    if story is None or not may_read(
        story,
        viewer=session.identity if session else None,
        viewer_upstream=session.upstream_id if session else None,
        admin_group=state().settings.admin_group,
        cookie=request.cookies.get(EXPLAIN_COOKIE),
    ):
        raise UserFacingError(NOT_YOURS, 404, "Not found")
    return story


def _policies(issuance: IssuanceStory) -> tuple[Section, ...]:
    """The role's trust and permission policies (IAM, cached a minute), for an issuance that named a role."""
    if not issuance.role_name or issuance.permission_set not in state().settings.access.permission_sets:
        return ()
    cache: dict[tuple[str, str], tuple[float, Section]] = current_app.extensions.setdefault("explain_policies", {})
    key = (issuance.account_id, issuance.role_name)
    cached = cache.get(key)
    if cached is None or cached[0] < time.monotonic() - POLICY_CACHE_SECONDS:
        settings = state().settings
        access = settings.access
        if "explain_iam" not in current_app.extensions:
            current_app.extensions["explain_iam"] = iam_reader(
                settings.aws_credentials_file, access.region, settings.aws_endpoint_url
            )
        section = policies_section(
            current_app.extensions["explain_iam"],
            access,
            account_id=issuance.account_id,
            permission_set=issuance.permission_set,
            role_name=issuance.role_name,
            role_arn=issuance.role_arn,
            trust=trust_policy(provider_arn(issuance.account_id, access.identity_provider_name)),
        )
        cached = cache[key] = (time.monotonic(), section)
    return (cached[1],)


def _assertion(issuance: IssuanceStory) -> Section | None:
    """The assertion the issuance sent, decoded from the request parameters it kept."""
    kept = issuance.request_parameters.get("SAMLAssertion")
    return assertion_section(kept) if kept else None


def _workload() -> Section:
    settings = state().settings
    workloads = settings.access.workloads
    if settings.workload_metadata_url:
        return instance_story(settings.workload_metadata_url, workloads, settings.access.region)
    return declared_workloads(workloads, settings.access.region)


def shown(story: Explanation) -> dict[str, Any]:
    """The story with what is read when it is shown: the JSON document the page is rendered from."""
    now = time.time()
    issuances = [
        shown_issuance(issuance, now, _policies(issuance), _assertion(issuance))
        for issuance in stories().issuances(story)
    ]
    return document(story, issuances, access=state().settings.access, workload=_workload(), now=now)


@blueprint.get("/explain")
def current():
    session = current_session()
    story = story_of_session(session) if session else None
    if story is not None:
        return redirect(link(story), code=303)
    page = render_template(
        "error.html",
        title="Nothing to explain yet",
        message="There is no sign-in to explain in this browser: sign in, and the portal keeps the story of how "
        "you got here for as long as your session lasts. A refused sign-in links to its own explanation.",
        home="/login" if session is None else "/",
        home_label="Sign in" if session is None else None,
    )
    return Response(page, status=404, mimetype="text/html")


@blueprint.get("/explain/<story_id>")
def page(story_id: str):
    story = _readable(story_id)
    return render_template("explain.html", doc=shown(story), json_url=f"{link(story)}.json")


@blueprint.get("/explain/<story_id>.json")
def as_json(story_id: str):
    story = _readable(story_id)
    return jsonify(shown(story))


@blueprint.get("/explain.schema.json")
def schema():
    response = Response(SCHEMA_FILE.read_text(encoding="utf-8"), mimetype="application/schema+json")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@api.get("/token/explain")
def for_the_command_line():
    _, grant_id = state().grants.bearer(request.headers.get(BEARER_HEADER))
    story = story_of_grant(grant_id)
    if story is None:
        raise ApiError("ResourceNotFoundException", "No explanation is kept for this sign-in (it may have expired).")
    return Response(json.dumps(shown(story)), mimetype="application/json")
