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

Two sign-ins racing to claim one address with two subjects cannot both win: each records itself, then
looks again, and withdraws (and is refused) if another subject holds the address too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from broker.core import audit
from broker.core.audit import RequestOrigin
from broker.core.identity import UpstreamLogin
from broker.errors import LoginFailed
from sso_common.store import AuditLog, DirectoryStore, PeopleQuery, Person

MAX_DROPPED_LISTED = 50  # group names listed in one audit record; the count is always complete
_ADDRESS_TAKEN = (
    "This identity provider now gives the address {email} to another account than before (its subject "
    "identifier changed). The portal never merges two accounts on its own: ask the IT service desk to check "
    "and release the old one."
)


class People:
    def __init__(self, directory: DirectoryStore, audit: AuditLog, clock: Callable[[], float] = time.time):
        self.directory, self.audit, self._clock = directory, audit, clock

    def admit(self, upstream_id: str, login: UpstreamLogin, origin: RequestOrigin) -> Person:
        """Record the person of a verified upstream login, or LoginFailed (see the module docstring)."""
        identity = login.identity
        existing = self.directory.get(upstream_id, identity.subject)
        if existing is not None and existing.disabled:
            raise LoginFailed("Your access to the portal is disabled. Ask the IT service desk.", 403)
        if self._holders(upstream_id, identity.email, identity.subject):
            raise LoginFailed(_ADDRESS_TAKEN.format(email=identity.email), 403)
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
