"""Credentials already issued, revoked in AWS: what IAM's "Revoke active sessions" does, for one person.

STS credentials cannot be recalled. So for each revocation in the outbox (broker.core.revocation), the
broker adds to every role the person holds credentials for (the audit trail's successful issuances of the
last 12 hours, STS's longest session) an inline policy statement

    {"Effect": "Deny", "Action": "*", "Resource": "*",
     "Condition": {"StringEquals": {"aws:SourceIdentity": "<their name toward AWS>"},
                   "DateLessThan": {"aws:TokenIssueTime": "<the revocation + clock margin, rounded up>"}}}

in the policy `BrokerRevocations`: their sessions issued before the revocation are denied everything, while
sessions issued after it (someone else's, or theirs once re-enabled) are not. The statement's Sid carries its
expiry, the cutoff plus the role's maximum session duration: past it, every session it could deny has expired,
and the sweep removes it. A role whose statements would outgrow the policy budget gets one statement instead,
for every session of the role issued before the latest cutoff (the IAM console's own "revoke active sessions").

One worker of one replica does all of this (a lease: `sso_common.lease`), so the policy documents are never
rewritten by two writers at once: it applies new revocations as they arrive and sweeps every few minutes.
Each revocation is applied twice: at once, and again once it has settled (`SETTLE_SECONDS` later), for an
issuance that was under way when it came: STS had minted (before the cutoff) but the audit record the worker
reads was written after its first look. The second look writes (and audits) only what the first missed.
IAM permissions it needs, in each member account (the broker reaches them through
OrganizationAccountAccessRole, like provisioning; a narrower role needs only these):
    iam:GetRolePolicy, iam:PutRolePolicy, iam:DeleteRolePolicy
    on arn:aws:iam::<account>:role/aws-reserved/sso.amazonaws.com/*
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from broker.aws.provisioning import REVOCATION_POLICY_NAME, ClientFactory
from broker.core.access import AccessConfig
from broker.core.naming import SSO_ROLE_PATH, role_name
from broker.core.revocation import Revocation
from sso_common.lease import Lease
from sso_common.store import AuditLog, AuditQuery, ChangeLog, StateStore

log = logging.getLogger(__name__)

MAX_STS_SESSION = 12 * 3600  # the longest session STS issues: older issuances cannot still be valid
POLICY_BUDGET = 6000  # characters of ours, of IAM's 10,240 for a role's inline policies together
AUDIT_LIMIT = 10_000  # issuances of one person looked at per revocation
CURSOR_KIND, SWEEP_KIND = "revoker_cursor", "revoker_sweep"
STATE_TTL = 400 * 86400
POLL = 0.1  # seconds between looks at the outbox while holding the lease
# Seconds after a revocation when it is applied again: longer than an issuance takes from its guard check to its
# audit record (the STS call's deadline, 13 s by default, then the audit write, at most 5 s on PostgreSQL).
SETTLE_SECONDS = 30
FIRST, SETTLED = "aws", "aws-settled"  # the two cursors over the outbox
_SID = re.compile(r"BrokerRevoke(?P<who>[0-9a-f]{16}|All)Until(?P<until>\d{1,12})")
_ROLE_ARN = re.compile(r"arn:aws:iam::(?P<account>\d{12}):role(?P<path>/.*/)?(?P<name>[\w+=,.@-]+)")


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cutoff_of(at: float, margin: int) -> int:
    """Sessions issued before this second are denied: the revocation plus the clock margin, rounded up (AWS's
    aws:TokenIssueTime has whole seconds, so a session of the revocation's own second is before it)."""
    return math.ceil(at + margin)


def _who(source_identity: str) -> str:
    return hashlib.sha256(source_identity.encode()).hexdigest()[:16]


def person_statement(source_identity: str, cutoff: int, until: int) -> dict[str, Any]:
    return {
        "Sid": f"BrokerRevoke{_who(source_identity)}Until{until}",
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {
            "StringEquals": {"aws:SourceIdentity": source_identity},
            "DateLessThan": {"aws:TokenIssueTime": iso(cutoff)},
        },
    }


def role_statement(cutoff: int, until: int) -> dict[str, Any]:
    return {
        "Sid": f"BrokerRevokeAllUntil{until}",
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {"DateLessThan": {"aws:TokenIssueTime": iso(cutoff)}},
    }


def _parts(statement: dict[str, Any]) -> tuple[str, int] | None:
    """(whom it is for: a hash of the source identity, or "All"; until when it is needed), for our statements."""
    match = _SID.fullmatch(str(statement.get("Sid", "")))
    return (match.group("who"), int(match.group("until"))) if match else None


def _cutoff(statement: dict[str, Any]) -> int:
    text = str(statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"])
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def size(statements: list[dict[str, Any]]) -> int:
    return len(json.dumps({"Version": "2012-10-17", "Statement": statements}, separators=(",", ":")))


def merged(statements: list[dict[str, Any]], source_identity: str, cutoff: int, until: int) -> list[dict[str, Any]]:
    """The role's statements with this person's in: one per person (the later cutoff and expiry win), or, once
    they would outgrow the budget, one for every session of the role before the latest cutoff."""
    who = _who(source_identity)
    kept = []
    for statement in statements:
        parts = _parts(statement)
        if parts is not None and parts[0] == who:
            cutoff, until = max(cutoff, _cutoff(statement)), max(until, parts[1])
        else:
            kept.append(statement)
    result = [*kept, person_statement(source_identity, cutoff, until)]
    if size(result) <= POLICY_BUDGET:
        return result
    ours = [statement for statement in result if _parts(statement) is not None]
    others = [statement for statement in result if _parts(statement) is None]
    return [
        *others,
        role_statement(
            max(_cutoff(statement) for statement in ours), max((_parts(statement) or ("", 0))[1] for statement in ours)
        ),
    ]


def _covers(statements: list[dict[str, Any]], source_identity: str, cutoff: int, until: int) -> bool:
    """Whether a statement already denies this person's sessions before `cutoff` until `until` (theirs, or the
    role-wide one `merged` falls back to)."""
    who = _who(source_identity)
    return any(
        parts is not None and parts[0] in (who, "All") and parts[1] >= until and _cutoff(statement) >= cutoff
        for statement in statements
        if (parts := _parts(statement)) is not None
    )


def unexpired(statements: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """The statements still needed at `now` (ours past their expiry go; anything else stays)."""
    return [statement for statement in statements if (parts := _parts(statement)) is None or parts[1] >= now]


@dataclass(frozen=True)
class DeniedRole:
    account_id: str
    role_name: str
    source_identity: str


class AwsRevoker:
    """Carries out the revocation outbox in AWS and sweeps expired statements (see the module docstring)."""

    def __init__(
        self,
        access: AccessConfig,
        clients: ClientFactory,
        outbox: ChangeLog,
        audit_log: AuditLog,
        store: StateStore,
        *,
        clock_margin: int = 5,
        sweep_interval: int = 300,
        clock: Callable[[], float] = time.time,
    ):
        self.access, self.clients, self.outbox, self.audit, self.store = access, clients, outbox, audit_log, store
        self.clock_margin, self.sweep_interval, self._clock = clock_margin, sweep_interval, clock

    # -- the worker's step -------------------------------------------------------------------------------

    def step(self, lease: Lease | None = None) -> float:
        """Apply the revocations not applied yet, again those that have settled, sweep when due; seconds until
        the next look."""
        first, settled = self._cursors()
        now = self._clock()
        for cursor, start, again in ((FIRST, first, False), (SETTLED, settled, True)):
            for position, record in self.outbox.read(start, limit=50):
                if lease is not None and not lease.keep():
                    return 0.0
                revocation = Revocation.from_record(record)
                if again and revocation.at + SETTLE_SECONDS > now:
                    break  # the outbox is in the order of the revocations: the rest settle later still
                self.apply(revocation, again=again)
                self.store.put(CURSOR_KIND, cursor, {"position": position}, STATE_TTL)
        last = (self.store.get(SWEEP_KIND, "aws") or {"at": 0.0})["at"]
        if now - last >= self.sweep_interval:
            self.sweep(now)
            self.store.put(SWEEP_KIND, "aws", {"at": now}, STATE_TTL)
        return POLL

    def _cursors(self) -> tuple[int, int]:
        """Where the two passes stand in the outbox. The settled pass of a broker from before it starts where
        the first pass stands (what that applied long ago has settled)."""
        first = (self.store.get(CURSOR_KIND, FIRST) or {"position": 0})["position"]
        settled = self.store.get(CURSOR_KIND, SETTLED)
        if settled is None:
            settled = {"position": first}
            self.store.put(CURSOR_KIND, SETTLED, settled, STATE_TTL)
        return first, settled["position"]

    # -- one revocation ------------------------------------------------------------------------------

    def denied_roles(self, revocation: Revocation) -> list[DeniedRole]:
        """The roles the person may hold live credentials for, and their name toward AWS in each: from the
        audit trail's successful issuances to them in the last 12 hours."""
        query = AuditQuery(
            event_type="credentials",
            person=revocation.subject,
            outcome="success",
            since=revocation.at - MAX_STS_SESSION,
        )
        found: dict[tuple[str, str, str], None] = {}
        # Not only those audited before the revocation: an issuance in flight then (STS minted before the cutoff,
        # the record written after) is audited after it, within the time it settles. Later ones (the person
        # re-enabled) would only add statements that deny nothing, and fill the role's policy budget.
        latest = cutoff_of(revocation.at, self.clock_margin) + SETTLE_SECONDS
        for event in self.audit.query(query, limit=AUDIT_LIMIT):
            match = _ROLE_ARN.fullmatch(str(event.get("role_arn") or ""))
            source_identity = event.get("source_identity")
            if match and isinstance(source_identity, str) and source_identity and event.get("time", 0) <= latest:
                found[(match.group("account"), match.group("name"), source_identity)] = None
        return [DeniedRole(*key) for key in found]

    def apply(self, revocation: Revocation, *, again: bool = False) -> list[DeniedRole]:
        """Deny the person's sessions before the cutoff on every role they hold credentials for (a policy already
        saying so is not written again); those roles. `again`: the settled pass, which answers (and audits) only
        the roles the first pass missed."""
        cutoff = cutoff_of(revocation.at, self.clock_margin)
        denied, added = [], []
        for role in self.denied_roles(revocation):
            until = cutoff + self._max_session(role.account_id, role.role_name)
            iam = self.clients(role.account_id, "iam")
            statements = self._statements(iam, role.role_name)
            if not _covers(statements, role.source_identity, cutoff, until):
                if not self._write(iam, role.role_name, merged(statements, role.source_identity, cutoff, until)):
                    continue  # the role is gone, and its sessions with it
                added.append(role)
            denied.append(role)
        if again:  # what the first pass missed, or nothing to say
            if not added:
                return []
            denied = added
        if denied:
            log.info("revocation applied in AWS%s: %d role(s)", " again, once settled" if again else "", len(denied))
        self.audit.append(
            {
                "type": "revocation",
                "outcome": "success",
                "upstream": revocation.upstream,
                "subject": revocation.subject,
                "email": revocation.email,
                "actor": "aws",
                "reason": (
                    f"deny on {len(denied)} role(s) for sessions issued before {iso(cutoff)}"
                    + (" (credentials audited after the revocation was first applied)" if again else "")
                    if denied
                    else "no credentials issued in the last 12 hours: nothing to deny in AWS"
                ),
                "roles": sorted({f"arn:aws:iam::{r.account_id}:role{SSO_ROLE_PATH}{r.role_name}" for r in denied}),
            }
        )
        return denied

    def _max_session(self, account_id: str, name: str) -> int:
        for permission_set in self.access.assigned_permission_sets(account_id):
            if role_name(self.access.identity_provider_name, account_id, permission_set.name) == name:
                return permission_set.session_duration
        return MAX_STS_SESSION

    # -- the sweep -----------------------------------------------------------------------------------

    def sweep(self, now: float | None = None) -> int:
        """Remove the statements whose sessions have all expired, in every role the broker provisions; how
        many were removed."""
        now = self._clock() if now is None else now
        removed = 0
        for account_id in self.access.accounts:
            iam = self.clients(account_id, "iam")
            for permission_set in self.access.assigned_permission_sets(account_id):
                name = role_name(self.access.identity_provider_name, account_id, permission_set.name)
                statements = self._statements(iam, name)
                kept = unexpired(statements, now)
                if len(kept) != len(statements):
                    removed += len(statements) - len(kept)
                    self._write(iam, name, kept)
        if removed:
            log.info("revocation sweep: %d expired deny statement(s) removed", removed)
        return removed

    # -- IAM -------------------------------------------------------------------------------------------

    @staticmethod
    def _statements(iam: Any, name: str) -> list[dict[str, Any]]:
        try:
            document = iam.get_role_policy(RoleName=name, PolicyName=REVOCATION_POLICY_NAME)["PolicyDocument"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "NoSuchEntity":
                return []
            raise
        if isinstance(document, str):
            document = json.loads(document)
        statements = document.get("Statement", [])
        return list(statements) if isinstance(statements, list) else [statements]

    @staticmethod
    def _write(iam: Any, name: str, statements: list[dict[str, Any]]) -> bool:
        """The role's policy as `statements` (none: no policy); False when the role no longer exists (deleted by
        provisioning when an assignment was removed: its sessions died with it, and a new role of that name has
        another role ID). Any other failure is raised, and the worker tries the record again."""
        if not statements:
            try:
                iam.delete_role_policy(RoleName=name, PolicyName=REVOCATION_POLICY_NAME)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "NoSuchEntity":
                    raise
            return True
        document = json.dumps({"Version": "2012-10-17", "Statement": statements})
        try:
            iam.put_role_policy(RoleName=name, PolicyName=REVOCATION_POLICY_NAME, PolicyDocument=document)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "NoSuchEntity":
                raise
            log.info("revocation: role %s no longer exists, nothing to deny on it", name)
            return False
        return True
