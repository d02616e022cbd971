"""The "How did I get here?" explanation: the story of one sign-in (or refusal), and of every credential
request made with it, as a typed record kept in the state store for the session's length.

What a story holds, in the order the portal shows it:
1. the upstream's answer as received, decoded, and each check with the outcome the validating code reached
   (recorded by that code: broker.core.evidence; nothing is validated again for the explanation);
2. the Identity the connector produced, which claim or attribute each field came from, and the trust
   boundary's checks and group mapping;
3. the entitlement decision over every assignment of access.yaml, as `entitlements_for` and
   `check_entitlement` made it;
4. per credential request (`IssuanceStory`): the entitlement check, the assertion the broker minted
   (decoded, its signature value withheld), the AssumeRoleWithSAML request and answer; the role's trust and
   permission policies are added when the story is shown (broker/aws/evidence.py);
5. the workload path (the Employee Directory's instance), added when shown.

Who may read a story (`may_read`): the person it is about (same upstream and subject), members of the admin
group, and, for a refusal before any session existed, the browser that was refused (a random value in its
cookie, of which the story keeps only a digest), so that a story cannot be read by guessing its address.

Nothing in a story is a secret (no password, code, token, signature value or credential): the recorders
store fingerprints (broker.core.evidence.fingerprint), and the request to STS is kept only with the
signature value withheld (as its parameters: the body is urlencoded from them when shown), and shown only once
the assertion has expired.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

from broker.core.access import AccessConfig, Assignment
from broker.core.entitlements import check_entitlement, entitlements_for
from broker.core.evidence import (
    FAILED,
    NOT_REACHED,
    PASSED,
    SKIPPED,
    Check,
    Fact,
    GroupFate,
    Recorder,
    Section,
    recording,
)
from broker.core.identity import Identity
from broker.core.sessions import session_reference
from broker.errors import EntitlementError
from sso_common.records import Record
from sso_common.store import StateStore

SCHEMA_VERSION = 1
SIGNED_IN, REFUSED = "signed in", "refused"
ISSUED, REFUSED_ISSUANCE, FAILED_ISSUANCE = "issued", "refused", "failed"
EXPLANATION_KIND = "explanation"
SESSION_LINK_KIND = "explanation_of_session"  # session reference -> explanation ID
ISSUANCE_COUNT_KIND = "explanation_issuances"
ISSUANCE_KIND = "explanation_issuance"
MAX_ISSUANCES = 20  # the newest credential requests kept per story
REFUSAL_LIFETIME = 3600  # a refusal's story, at most (no session bounds it)
CHECK_ENTITLEMENT = "the broker (check_entitlement)"
STEP_TITLES = {
    "transaction": "The sign-in transaction",
    "upstream": "The upstream answer",
    "identity": "The Identity",
    "person": "The person at the portal",
}


@dataclass(frozen=True)
class Owner(Record):
    """Whom a story is about: a person is (upstream, subject)."""

    upstream: str
    subject: str
    email: str
    display_name: str


@dataclass(frozen=True)
class Decision(Record):
    """One assignment of access.yaml and what it gave the person."""

    group: str
    account_id: str
    account_name: str
    permission_set: str
    matched: bool  # the person is in `group` (as entitlements_for found)
    requires_mfa: bool
    outcome: str  # "granted", "refused" (check_entitlement refused it), "not yours"
    why: str


@dataclass(frozen=True)
class Explanation(Record):
    id: str
    created: float
    expires: float
    outcome: str  # SIGNED_IN or REFUSED
    reason: str  # the refusal, as the page said it ("" when signed in)
    channel: str
    upstream_id: str
    upstream_name: str
    protocol: str
    owner: Owner | None
    sections: tuple[Section, ...]
    groups: tuple[GroupFate, ...] = ()
    # The assignments whose group the person is in, as decided at sign-in; with `others_not_yours`, every other
    # assignment of access.yaml was "not yours" and is listed when the story is shown (`all_decisions`), not
    # kept: about half of a story's size with fifty assignments. (Stories kept before that hold every decision.)
    decisions: tuple[Decision, ...] = ()
    others_not_yours: bool = False
    binding: str = field(default="", repr=False)  # digest of the refused browser's cookie; never shown


@dataclass(frozen=True)
class IssuanceStory(Record):
    """One credential request made with the session (portal or sso API)."""

    time: float
    channel: str
    account_id: str
    account_name: str
    permission_set: str
    role_name: str
    role_arn: str
    outcome: str  # ISSUED, REFUSED_ISSUANCE, FAILED_ISSUANCE
    reason: str
    sections: tuple[Section, ...]
    assertion_expires: float = 0.0
    # The AssumeRoleWithSAML parameters, the assertion's signature value withheld; shown after assertion_expires,
    # urlencoded into the request body only then (`request_body`): kept as parameters, not as the body. Their
    # SAMLAssertion is also what the assertion's section is decoded from when the story is shown.
    request_parameters: dict[str, str] = field(default_factory=dict, repr=False)
    request_body: str = field(default="", repr=False)  # the body itself, as stories written before kept it

    def body(self) -> str:
        """The request body as sent to STS, but for the signature value ("" when no request was made)."""
        return urlencode(self.request_parameters) if self.request_parameters else self.request_body


def new_id() -> str:
    return secrets.token_urlsafe(18)


def new_binding() -> str:
    """The value of a refused browser's explanation cookie."""
    return secrets.token_urlsafe(32)


def binding_digest(value: str) -> str:
    return hashlib.sha256(b"explanation binding\x00" + value.encode()).hexdigest()


# --- assembling a story from what was recorded -------------------------------------------------------


def decide(identity: Identity, access: AccessConfig, recorder: Recorder) -> tuple[Decision, ...]:
    """The entitlement decision over the assignments whose group the person is in, as the entitlement rules make
    it: `entitlements_for` records each assignment it evaluates, `check_entitlement` the outcome for each pair
    it lists. Every other assignment is "not yours" (`not_yours`)."""
    with recording(recorder):
        for entitlement in entitlements_for(identity, access):
            try:
                check_entitlement(identity, access, entitlement.account_id, entitlement.permission_set)
            except EntitlementError:
                pass  # recorded by check_entitlement
    decisions = []
    for assignment in access.assignments:
        match = recorder.assignments.get((assignment.group, assignment.account_id, assignment.permission_set))
        if match is None or not match.matched:
            continue
        checked = recorder.entitlement_checks.get((assignment.account_id, assignment.permission_set))
        requires_mfa = access.permission_sets[assignment.permission_set].requires_mfa
        if checked is not None and checked.outcome != "granted":
            outcome, why = "refused", checked.reason
        else:
            outcome = "granted"
            why = f"you are in the group {assignment.group}" + (
                "; it requires MFA, and you signed in with a second factor" if requires_mfa else ""
            )
        decisions.append(_decision(assignment, access, matched=True, outcome=outcome, why=why))
    return tuple(decisions)


def not_yours(assignment: Assignment, access: AccessConfig) -> Decision:
    return _decision(
        assignment, access, matched=False, outcome="not yours", why=f"you are not in the group {assignment.group}"
    )


def _decision(assignment: Assignment, access: AccessConfig, *, matched: bool, outcome: str, why: str) -> Decision:
    return Decision(
        group=assignment.group,
        account_id=assignment.account_id,
        account_name=access.accounts[assignment.account_id].name,
        permission_set=assignment.permission_set,
        matched=matched,
        requires_mfa=access.permission_sets[assignment.permission_set].requires_mfa,
        outcome=outcome,
        why=why,
    )


def all_decisions(story: Explanation, access: AccessConfig) -> tuple[Decision, ...]:
    """Every assignment of access.yaml and what it gave the person: the kept decisions, and "not yours" for the
    others (in access.yaml's order; a kept decision whose assignment has left access.yaml since comes last)."""
    if not story.others_not_yours:
        return story.decisions
    kept = {(d.group, d.account_id, d.permission_set): d for d in story.decisions}
    listed = []
    for assignment in access.assignments:
        key = (assignment.group, assignment.account_id, assignment.permission_set)
        decision = kept.pop(key) if key in kept else not_yours(assignment, access)
        listed.append(decision)
    return (*listed, *kept.values())


def sign_in_story(
    recorder: Recorder,
    *,
    upstream_id: str,
    upstream_name: str,
    protocol: str,
    identity: Identity | None,
    access: AccessConfig,
    reason: str | None,
    lifetime: float,
    channel: str,
    binding: str = "",
    earlier: Explanation | None = None,
    decided: bool = True,
    clock: Callable[[], float] = time.time,
) -> Explanation:
    """The story of a sign-in (`reason` None) or of its refusal, from what `recorder` holds; `earlier` is the
    same sign-in's story from an earlier request (SAML: the ACS, before the browser finishes), merged in.
    The entitlement decision is made (and recorded) for a sign-in when `decided`."""
    now = clock()
    owner = (
        Owner(upstream_id, identity.subject, identity.email, identity.display_name) if identity is not None else None
    )
    decided = identity is not None and reason is None and decided
    decisions = decide(identity, access, recorder) if identity is not None and decided else ()
    sections = recorder.sections(*STEP_TITLES)
    if earlier is not None:
        sections = merge_sections(earlier.sections, sections)
    return Explanation(
        id=earlier.id if earlier is not None else new_id(),
        created=now,
        expires=now + lifetime,
        outcome=SIGNED_IN if reason is None else REFUSED,
        reason=reason or "",
        channel=channel,
        upstream_id=upstream_id,
        upstream_name=upstream_name,
        protocol=protocol,
        owner=owner,
        sections=sections,
        groups=(earlier.groups if earlier is not None else ()) + tuple(recorder.groups),
        decisions=decisions,
        others_not_yours=decided,
        binding=binding_digest(binding) if binding else "",
    )


def merge_sections(earlier: tuple[Section, ...], later: tuple[Section, ...]) -> tuple[Section, ...]:
    """One story from two requests' records: a check takes the later outcome unless the later request never
    reached it; facts and documents of both are kept."""
    by_key = {section.key: section for section in earlier}
    for section in later:
        before = by_key.get(section.key)
        if before is None:
            by_key[section.key] = section
            continue
        outcomes = {check.name: check for check in section.checks if check.outcome != NOT_REACHED}
        names = [check.name for check in before.checks]
        checks = tuple(outcomes.get(check.name, check) for check in before.checks) + tuple(
            check for check in section.checks if check.name not in names
        )
        labels = {fact.label for fact in section.facts}
        by_key[section.key] = replace(
            before,
            summary=section.summary or before.summary,
            facts=tuple(fact for fact in before.facts if fact.label not in labels) + section.facts,
            documents=before.documents + section.documents,
            checks=checks,
        )
    order = [key for key in STEP_TITLES if key in by_key] + [key for key in by_key if key not in STEP_TITLES]
    return tuple(by_key[key] for key in order)


def entitlement_section(recorder: Recorder, access: AccessConfig, account_id: str, permission_set: str) -> Section:
    """The check of one credential request, from the outcome `check_entitlement` recorded."""
    checked = recorder.entitlement_checks.get((account_id, permission_set))
    permission = access.permission_sets.get(permission_set)
    requires_mfa = bool(permission and permission.requires_mfa)
    assigned_by = sorted(
        match.group
        for match in recorder.assignments.values()
        if match.matched and (match.account_id, match.permission_set) == (account_id, permission_set)
    )
    has = Check(
        "an assignment gives you this role",
        PASSED if assigned_by else (FAILED if checked else NOT_REACHED),
        CHECK_ENTITLEMENT,
        expected=f"a group of yours assigned {permission_set} in {account_id}",
        received=", ".join(assigned_by) or "none of your groups",
        detail=checked.reason if checked and checked.outcome == "NotEntitled" else "",
    )
    if checked is None or checked.outcome == "NotEntitled":
        mfa = Check("multi-factor authentication", NOT_REACHED, CHECK_ENTITLEMENT)
    elif checked.outcome == "MfaRequired":
        mfa = Check(
            "multi-factor authentication",
            FAILED,
            CHECK_ENTITLEMENT,
            expected="a second factor at sign-in (the permission set requires MFA)",
            received="signed in without a second factor",
            detail=checked.reason,
        )
    else:
        mfa = Check(
            "multi-factor authentication",
            PASSED if requires_mfa else SKIPPED,
            CHECK_ENTITLEMENT,
            expected="a second factor at sign-in" if requires_mfa else "",
            received="signed in with a second factor" if requires_mfa else "",
            detail="" if requires_mfa else "the permission set does not require MFA",
        )
    facts = (Fact("requires MFA", "yes" if requires_mfa else "no", "access.yaml permission_sets"),)
    return Section("entitlement", "The entitlement check", facts=facts, checks=(has, mfa))


def issuance_story(
    recorder: Recorder,
    *,
    access: AccessConfig,
    channel: str,
    account_id: str,
    permission_set: str,
    role_name: str,
    role_arn: str,
    outcome: str,
    reason: str = "",
    clock: Callable[[], float] = time.time,
) -> IssuanceStory:
    account = access.accounts.get(account_id)
    return IssuanceStory(
        time=clock(),
        channel=channel,
        account_id=account_id,
        account_name=account.name if account else account_id,
        permission_set=permission_set,
        role_name=role_name,
        role_arn=role_arn,
        outcome=outcome,
        reason=reason,
        sections=(
            entitlement_section(recorder, access, account_id, permission_set),
            *recorder.sections("request", "answer"),  # the assertion's section is decoded when shown
        ),
        assertion_expires=float(recorder.notes.get("assertion_expires", 0.0)),
        request_parameters=dict(recorder.notes.get("request_parameters", {})),
    )


# --- who may read a story ------------------------------------------------------------------------------


def may_read(
    story: Explanation,
    *,
    viewer: Identity | None,
    viewer_upstream: str | None,
    admin_group: str,
    cookie: str | None,
) -> bool:
    if viewer is not None:
        if admin_group in viewer.groups:
            return True
        owner = story.owner
        if owner is not None and (owner.upstream, owner.subject) == (viewer_upstream, viewer.subject):
            return True
    return bool(story.binding and cookie and hmac.compare_digest(story.binding, binding_digest(cookie)))


# --- keeping stories ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoryReference:
    """Enough of a story to add a credential request to it, without reading the story itself (a large record):
    its ID and until when it is kept."""

    id: str
    expires: float


class Explanations:
    """Stories in the state store, each for its own lifetime (the session's, or REFUSAL_LIFETIME)."""

    def __init__(self, store: StateStore, clock: Callable[[], float] = time.time):
        self.store, self._clock = store, clock

    def _ttl(self, story: Explanation | StoryReference) -> float:
        return max(1.0, story.expires - self._clock())

    def save(self, story: Explanation) -> None:
        self.store.put(EXPLANATION_KIND, story.id, story.to_record(), self._ttl(story))

    def load(self, story_id: str | None) -> Explanation | None:
        record = self.store.get(EXPLANATION_KIND, story_id) if story_id else None
        return Explanation.from_record(record) if record else None

    def link_session(self, session_id: str, story: Explanation) -> None:
        link = {"id": story.id, "expires": story.expires}
        self.store.put(SESSION_LINK_KIND, session_reference(session_id), link, self._ttl(story))

    def reference_of_session_reference(self, reference: str | None) -> StoryReference | None:
        """The story of a session, named (a link written before the links held `expires`: the story is read)."""
        link = self.store.get(SESSION_LINK_KIND, reference) if reference else None
        if not link:
            return None
        if isinstance(link.get("expires"), (int, float)):
            return StoryReference(link["id"], float(link["expires"]))
        story = self.load(link["id"])
        return StoryReference(story.id, story.expires) if story else None

    def of_session_reference(self, reference: str | None) -> Explanation | None:
        link = self.store.get(SESSION_LINK_KIND, reference) if reference else None
        return self.load(link["id"]) if link else None

    def of_session(self, session_id: str) -> Explanation | None:
        return self.of_session_reference(session_reference(session_id))

    def add_issuance(self, story: Explanation | StoryReference, issuance: IssuanceStory) -> None:
        ttl = self._ttl(story)
        number = self.store.incr(ISSUANCE_COUNT_KIND, story.id, ttl)
        self.store.put(ISSUANCE_KIND, f"{story.id}:{number}", issuance.to_record(), ttl)
        if number > MAX_ISSUANCES:  # the oldest kept one goes (a write only once there are that many)
            self.store.delete(ISSUANCE_KIND, f"{story.id}:{number - MAX_ISSUANCES}")

    def issuances(self, story: Explanation) -> list[IssuanceStory]:
        count = (self.store.get(ISSUANCE_COUNT_KIND, story.id) or {}).get("count", 0)
        found = []
        for number in range(max(1, count - MAX_ISSUANCES + 1), count + 1):
            record = self.store.get(ISSUANCE_KIND, f"{story.id}:{number}")
            if record:
                found.append(IssuanceStory.from_record(record))
        return found


# --- what is shown -------------------------------------------------------------------------------------


def shown_issuance(
    issuance: IssuanceStory, now: float, extra: tuple[Section, ...] = (), assertion: Section | None = None
) -> dict[str, Any]:
    """An issuance as the page and the JSON show it: `assertion` (the Response it kept, decoded) before the
    request unless the story holds one (stories kept before it was decoded at show time), `extra` at the end,
    and the request body only once the assertion expired."""
    sections = issuance.sections
    if assertion is not None and not any(section.key == assertion.key for section in sections):
        at = next((i for i, section in enumerate(sections) if section.key == "request"), len(sections))
        sections = (*sections[:at], assertion, *sections[at:])
    record = replace(issuance, sections=sections + extra).to_record()
    del record["request_parameters"]
    made = bool(issuance.request_parameters or issuance.request_body)
    expired = made and now >= issuance.assertion_expires
    record["request_body"] = issuance.body() if expired else None
    record["request_body_withheld"] = made and not expired
    return record


def document(
    story: Explanation,
    issuances: list[dict[str, Any]],
    *,
    access: AccessConfig,
    workload: Section | None,
    now: float,
) -> dict[str, Any]:
    """The whole story as JSON (explanation.schema.json): what the page shows, for tools."""
    record = replace(story, decisions=all_decisions(story, access)).to_record()
    record.pop("binding", None)
    record.pop("others_not_yours", None)
    return {
        "schema_version": SCHEMA_VERSION,
        **record,
        "issuances": issuances,
        "workload": workload.to_record() if workload is not None else None,
        "shown_at": now,
    }


def workload_note() -> Section:
    """Said when the portal knows no instance to show."""
    return Section(
        "workload",
        "The workload path",
        summary="No instance metadata service is configured for the portal (workload_metadata_url), so only the "
        "declared roles are shown.",
    )
