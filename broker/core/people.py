"""The people the broker has seen, kept at every sign-in in the DirectoryStore: what keeps an email address
one person.

A person is (upstream, subject), never the email address alone. At each sign-in the broker records
(upstream, subject, email, name, groups) and refuses:
- an address the same upstream already gave to another subject. A changed `sub` (or persistent NameID)
  for the same address is never merged silently, because it may as well be a reassigned address or an
  IdP that lets people choose their own: an administrator checks, then releases the old entry with
  `broker people forget UPSTREAM SUBJECT`;
- a person an administrator disabled in the directory.
A refusal is a `LoginFailed` (a page and an audit record, by the sign-in glue). The upstream groups that
its mapping dropped are written to the audit trail here (`groups_dropped`), naming the person.

For an upstream that provisions over SCIM, the directory is the source of truth for who exists and in which
groups: a sign-in is admitted only for a provisioned, active person, and is not written to the directory (the
upstream's SCIM client writes it); the session then carries the directory's groups, not the sign-in's.

`current` is the check every later use makes (`broker.core.guard`): the person as the directory has them
now, or `AccessEnded` when they were disabled, deleted (SCIM) or revoked since the session started.

Two sign-ins racing to claim one address with two subjects cannot both win: each records itself, then
looks again, and withdraws (and is refused) if another subject holds the address too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from broker.core import audit
from broker.core.audit import RequestOrigin
from broker.core.identity import Identity, UpstreamLogin
from broker.errors import AccessEnded, LoginFailed
from sso_common.store import AuditLog, DirectoryStore, PeopleQuery, Person

MAX_DROPPED_LISTED = 50  # group names listed in one audit record; the count is always complete
DISABLED = "Your access to the portal is disabled. Ask the IT service desk."
NOT_PROVISIONED = (
    "Your identity provider has not provisioned you to the portal (or has removed you). Ask the IT service desk."
)
_ADDRESS_TAKEN = (
    "This identity provider now gives the address {email} to another account than before (its subject "
    "identifier changed). The portal never merges two accounts on its own: ask the IT service desk to check "
    "and release the old one."
)


class People:
    def __init__(
        self,
        directory: DirectoryStore,
        audit: AuditLog,
        clock: Callable[[], float] = time.time,
        scim_upstreams: frozenset[str] = frozenset(),
    ):
        self.directory, self.audit, self._clock = directory, audit, clock
        self.scim_upstreams = scim_upstreams

    def admit(self, upstream_id: str, login: UpstreamLogin, origin: RequestOrigin) -> Person:
        """Record the person of a verified upstream login, or LoginFailed (see the module docstring)."""
        identity = login.identity
        existing = self.directory.get(upstream_id, identity.subject)
        if existing is not None and existing.disabled:
            raise LoginFailed(DISABLED, 403)
        if upstream_id in self.scim_upstreams and (existing is None or not existing.provisioned):
            raise LoginFailed(NOT_PROVISIONED, 403)
        if self._holders(upstream_id, identity.email, identity.subject):
            raise LoginFailed(_ADDRESS_TAKEN.format(email=identity.email), 403)
        if upstream_id in self.scim_upstreams and existing is not None:  # the upstream's SCIM client writes it
            if login.dropped_groups:
                self._audit_dropped(upstream_id, login, origin)
            return existing
        person = Person(
            upstream=upstream_id,
            subject=identity.subject,
            email=identity.email,
            display_name=identity.display_name,
            groups=identity.groups,
            revoked_at=existing.revoked_at if existing else None,
            updated_at=self._clock(),
        )
        self.directory.put(person if existing is None else replace(existing, **_changes(person)))
        if self._holders(upstream_id, identity.email, identity.subject):  # another subject raced in
            if existing is None:
                self.directory.delete(upstream_id, identity.subject)
            else:
                self.directory.put(existing)
            raise LoginFailed(_ADDRESS_TAKEN.format(email=identity.email), 403)
        if login.dropped_groups:
            self._audit_dropped(upstream_id, login, origin)
        return person

    def current(self, upstream_id: str, identity: Identity, since: float) -> Identity:
        """The identity of a session or grant that started at `since`, as the directory has the person now (for
        a SCIM upstream: its groups); AccessEnded when they may no longer act."""
        person = self.directory.get(upstream_id, identity.subject)
        scim = upstream_id in self.scim_upstreams
        if scim and (person is None or not person.provisioned):
            raise AccessEnded("your identity provider has removed you from the portal's directory")
        if person is None:
            return identity
        if person.disabled:
            raise AccessEnded("your access has been disabled")
        if person.revoked_at is not None and person.revoked_at >= since:
            raise AccessEnded("your access was revoked")
        if not scim:
            return identity
        if person.created_at > since:
            raise AccessEnded("your identity provider has provisioned you again since you signed in")
        return replace(identity, groups=person.groups) if person.groups != identity.groups else identity

    def _holders(self, upstream_id: str, email: str, subject: str) -> list[Person]:
        """The other subjects this upstream gave `email` to."""
        found = self.directory.find(PeopleQuery(upstream=upstream_id, email=email), limit=10)
        return [person for person in found if person.subject != subject]

    def _audit_dropped(self, upstream_id: str, login: UpstreamLogin, origin: RequestOrigin) -> None:
        dropped = sorted(login.dropped_groups)
        audit.groups_dropped(
            self.audit, origin, upstream_id, login.identity, dropped[:MAX_DROPPED_LISTED], len(dropped)
        )


def _changes(person: Person) -> dict:
    return {
        "email": person.email,
        "display_name": person.display_name,
        "groups": person.groups,
        "updated_at": person.updated_at,
    }
