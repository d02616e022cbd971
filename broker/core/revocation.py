"""Revoking a person: what was issued to them before now is void, at the broker at once and in AWS soon after.

`Revocations.revoke` is the one place a revocation starts, whatever asked for it (SCIM disabling, deleting or
re-joining a person, an administrator on the people page; a sign-out at the IdP ends sessions only, as IAM
Identity Center's does):
1. the directory's `revoked_at` moves to now, so every portal session, command-line grant and refresh from
   before it is refused at its next use (`broker.core.people.People.current`);
2. a `Revocation` goes into the revocation outbox (a `ChangeLog`), which one worker of one replica (a lease)
   carries out in AWS: a Deny on the roles the person has credentials for, conditioned on their
   SourceIdentity and on `aws:TokenIssueTime` before the revocation (`broker.aws.revocation`), since STS
   credentials cannot be recalled;
3. the audit trail records it (`revocation`, with who asked and why).
A revocation is never undone: re-enabling a person lets them sign in again, and only what is issued after
the revocation works.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from broker.core import audit
from sso_common.records import Record
from sso_common.store import AuditLog, ChangeLog, DirectoryStore


@dataclass(frozen=True)
class Revocation(Record):
    """One revocation, as the outbox keeps it for the AWS side."""

    upstream: str
    subject: str
    email: str  # the person's address when revoked (their name toward AWS, SourceIdentity, came from it)
    at: float
    reason: str


class Revocations:
    def __init__(
        self,
        directory: DirectoryStore,
        audit_log: AuditLog,
        outbox: ChangeLog,
        clock: Callable[[], float] = time.time,
    ):
        self.directory, self.audit, self.outbox, self._clock = directory, audit_log, outbox, clock

    def revoke(
        self, upstream: str, subject: str, reason: str, actor: str, *, email: str = "", in_directory: bool = True
    ) -> Revocation:
        """Revoke everything issued to (upstream, subject) until now: at the broker (the directory's
        `revoked_at`, when the person is in it), and in AWS (the outbox). `actor` is who asked (an admin's
        address, "scim:<upstream>"), for the audit trail. `in_directory=False`
        leaves the directory alone, for a person whose record goes next (a SCIM delete), or is written next with
        the returned `at` as its `revoked_at` (a SCIM disable): that write ends their sessions with its own reason,
        where a `revoked_at` first would tell a request in between "revoked"."""
        at = recorded = self._clock()
        person = self.directory.get(upstream, subject)
        if person is not None:
            if in_directory:
                self.directory.revoke(upstream, subject, at)
                # the guard admits until that write lands: AWS's cutoff must follow it, however long it took
                recorded = max(at, self._clock())
            email = email or person.email
        revocation = Revocation(upstream, subject, email, recorded, reason)
        self.outbox.append(revocation.to_record())
        audit.revocation(self.audit, upstream, subject, email, reason, actor, at)
        return revocation
