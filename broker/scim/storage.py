"""Users and Groups of one upstream, kept in the broker's `DirectoryStore` (scim2-server's storage interface).

A SCIM User is a `Person` of the upstream: `externalId` is the person's subject at the upstream (the `sub`,
the persistent NameID), which joins the provisioned person to their sign-ins; when the IdP changes it, what the
former subject held is revoked and the record moves to the new one (`DirectoryStore.rename`). A user created
without one (Okta sends none unless its admin maps it) is kept, but joined to no sign-in: its key is a subject
of its own (`UNJOINED`), nobody can sign in as it, and the audit trail says so. `userName` is unique per
upstream (case-insensitively); `active` false disables the person; the rest of the resource is kept as given
(without `password`, which is never stored) and returned as given.
A SCIM Group is a `DirectoryGroup`: its members are provisioned users of the same upstream (groups in groups
are refused), and it becomes a broker group only through the upstream's group mapping, the same mapping a
sign-in's groups go through: a group the mapping drops is kept (the IdP may manage it) but grants nothing.
The address the broker keeps for a person is the first of their SCIM addresses within the upstream's email
domains (or ""): nothing outside the upstream's trust boundary is used.

Every write is one conditional store write (`if_version`): a concurrent write makes it fail whole (412 to the
handler, which re-reads and re-applies a PATCH), and a refused write leaves nothing behind. Consequences:
disabling or deleting a person revokes them (`broker.core.revocation`); every write is audited (`scim`).
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from scim2_models import (
    InvalidValueException,
    Meta,
    NotFoundException,
    NotImplementedException,
    PreconditionFailedException,
    Resource,
    ResourceType,
    ResponseParameters,
    ScimProvider,
    SearchRequest,
    UniquenessException,
)
from scim2_server.storage import ScimStorage, SearchPage

from broker.connectors.mapping import EMAIL
from broker.connectors.trust import UpstreamTrust
from broker.core import audit
from broker.core.revocation import Revocations
from broker.scim.filters import translate
from broker.scim.provider import MAX_GROUP_MEMBERS, MAX_USER_BYTES, model_for
from sso_common.store import (
    AuditLog,
    DirectoryConflict,
    DirectoryGroup,
    DirectoryStore,
    GroupQuery,
    PeopleQuery,
    Person,
    UnknownMember,
)

TEXT_LIMIT = 256  # externalId, userName, displayName, a group's displayName
NOT_KEPT = ("id", "meta", "groups", "password", "externalId", "userName")  # columns, derived, or secret
DISABLED_REASON = "disabled by the identity provider (SCIM)"
DELETED_REASON = "deleted by the identity provider (SCIM)"
UNJOINED = "scim-unjoined:"  # the subject of a user provisioned without an externalId
REJOINED_REASON = "its externalId was changed by the identity provider (SCIM)"
_VERSION = re.compile(r'(?:W/)?"(\d{1,18})"')


def _now_meta(resource_type: str, created: float, updated: float, version: int) -> Meta:
    return Meta(
        resource_type=resource_type,
        created=datetime.fromtimestamp(created, UTC),
        last_modified=datetime.fromtimestamp(updated, UTC),
        version=f'W/"{version}"',
    )


def _text(what: str, value: Any) -> str:
    """A value the broker keeps as a key or a name: text without control or invisible formatting characters,
    within the limit; InvalidValueException (400) otherwise, naming the attribute, never echoing the value."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidValueException(detail=f"{what} is required")
    if len(value) > TEXT_LIMIT:
        raise InvalidValueException(detail=f"{what} is longer than {TEXT_LIMIT} characters")
    if any(unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp") for ch in value):
        raise InvalidValueException(detail=f"{what} holds control or invisible characters")
    return value


def _version(expected: str | None) -> int | None:
    if expected is None:
        return None
    match = _VERSION.fullmatch(expected.strip())
    if match is None:
        raise PreconditionFailedException(detail="The version does not match")
    return int(match.group(1))


class DirectoryScimStorage(ScimStorage):
    """One upstream's Users and Groups. `revocations` carries out what disabling or deleting someone means."""

    def __init__(
        self,
        trust: UpstreamTrust,
        directory: DirectoryStore,
        provider: ScimProvider,
        revocations: Revocations,
        audit_log: AuditLog,
        clock: Callable[[], float] = time.time,
    ):
        self.trust, self.upstream = trust, trust.upstream
        self.directory, self.revocations, self.audit, self._clock = directory, revocations, audit_log, clock
        self.user_model, self.group_model = model_for(provider, "User"), model_for(provider, "Group")

    # -- reads ----------------------------------------------------------------------------------------------

    def get(
        self, resource_type: ResourceType, resource_id: str, *, response_parameters: ResponseParameters | None = None
    ) -> Resource:
        if resource_type.name == "User":
            return self._user(self._person(resource_id))
        return self._group(self._stored_group(resource_id))

    def search(
        self, resource_types: list[ResourceType], search_request: SearchRequest, *, position: Any = None
    ) -> SearchPage:
        if len(resource_types) != 1:
            raise NotImplementedException(detail="Search at the root is not supported: search /Users or /Groups")
        name = str(resource_types[0].name)
        fields = translate(search_request.filter.ast if search_request.filter is not None else None, name)
        if fields is None:
            return SearchPage(0, [])
        offset, limit = (search_request.start_index or 1) - 1, search_request.count
        # A page starting past the last result is empty (RFC 7644 3.4.2.4), asked of no store: a startIndex
        # past the engines' 64-bit integers would fail there.
        if name == "User":
            people_query = PeopleQuery(upstream=self.upstream, provisioned=True, **fields)
            total = self.directory.count(people_query)
            found = self.directory.find(people_query, offset=offset, limit=limit) if limit and offset < total else []
            return SearchPage(total, [self._user(person) for person in found])
        group_query = GroupQuery(upstream=self.upstream, **fields)
        total = self.directory.count_groups(group_query)
        groups = self.directory.find_groups(group_query, offset=offset, limit=limit) if limit and offset < total else []
        return SearchPage(total, [self._group(group) for group in groups])

    def _person(self, scim_id: str) -> Person:
        found = self.directory.find(PeopleQuery(upstream=self.upstream, scim_id=scim_id), limit=1)
        if not found:
            raise NotFoundException(detail="No such user")
        return found[0]

    def _stored_group(self, group_id: str) -> DirectoryGroup:
        group = self.directory.get_group(self.upstream, group_id)
        if group is None:
            raise NotFoundException(detail="No such group")
        return group

    def _user(self, person: Person) -> Resource:
        assert person.scim_id is not None
        document = json.loads(person.scim_attributes) if person.scim_attributes else {}
        memberships = self.directory.find_groups(
            GroupQuery(upstream=self.upstream, member=person.scim_id), limit=MAX_GROUP_MEMBERS
        )
        document.update(id=person.scim_id, userName=person.user_name)
        if "active" in document or person.disabled:  # as given (absent: active), the column authoritative
            document["active"] = not person.disabled
        if not person.subject.startswith(UNJOINED):
            document["externalId"] = person.subject
        if memberships:
            document["groups"] = [
                {"value": group.id, "$ref": f"Groups/{group.id}", "display": group.display_name, "type": "direct"}
                for group in memberships
            ]
        user = self.user_model.model_validate(document)
        user.meta = _now_meta("User", person.created_at, person.updated_at, person.version)
        return user

    def _group(self, group: DirectoryGroup) -> Resource:
        document: dict[str, Any] = {
            "schemas": [str(self.group_model.__schema__)],
            "id": group.id,
            "displayName": group.display_name,
        }
        if group.external_id is not None:
            document["externalId"] = group.external_id
        if group.members:
            document["members"] = [
                {"value": member, "$ref": f"Users/{member}", "type": "User"} for member in sorted(group.members)
            ]
        resource = self.group_model.model_validate(document)
        resource.meta = _now_meta("Group", group.created_at, group.updated_at, group.version)
        return resource

    # -- writes ---------------------------------------------------------------------------------------------

    def create(self, resource_type: ResourceType, resource: Resource) -> Resource:
        if resource_type.name == "User":
            return self._user(self._create_user(resource))
        return self._group(self._create_group(resource))

    def update(
        self, resource_type: ResourceType, resource: Resource, *, expected_version: str | None = None
    ) -> Resource:
        if resource_type.name == "User":
            return self._user(self._update_user(resource, _version(expected_version)))
        return self._group(self._update_group(resource, _version(expected_version)))

    def delete(self, resource_type: ResourceType, resource_id: str, *, expected_version: str | None = None) -> None:
        expected = _version(expected_version)
        if resource_type.name == "User":
            person = self._person(resource_id)
            if expected is not None and expected != person.version:
                raise PreconditionFailedException(detail="The user changed meanwhile")
            self.revocations.revoke(
                self.upstream, person.subject, DELETED_REASON, f"scim:{self.upstream}", in_directory=False
            )  # AWS first: a failure between the two leaves one revocation too many, never one too few
            self.directory.delete(self.upstream, person.subject)
            self._revoked_again(person.subject, DELETED_REASON, person.email)
            audit.scim_change(self.audit, self.upstream, "user deleted", subject=person.subject, email=person.email)
            return
        group = self._stored_group(resource_id)
        if expected is not None and expected != group.version:
            raise PreconditionFailedException(detail="The group changed meanwhile")
        self.directory.delete_group(self.upstream, group.id)
        audit.scim_change(self.audit, self.upstream, "group deleted", group=group.display_name)

    # -- users ----------------------------------------------------------------------------------------------

    def _fields(self, resource: Any) -> dict[str, Any]:
        """What a User resource sets on the person: the columns, and the rest of it as JSON."""
        user_name = _text("userName", resource.user_name)
        document = resource.model_dump()
        kept = {name: value for name, value in document.items() if name not in NOT_KEPT}
        attributes = json.dumps(kept, sort_keys=True, separators=(",", ":"))
        if len(attributes.encode()) > MAX_USER_BYTES:
            raise InvalidValueException(detail=f"The user's attributes are larger than {MAX_USER_BYTES // 1024} KiB")
        return {
            "user_name": user_name,
            "email": self._address(document, user_name),
            "display_name": self._display_name(document, user_name),
            "disabled": resource.active is False,
            "scim_attributes": attributes,
        }

    def _address(self, document: dict[str, Any], user_name: str) -> str:
        """The person's address as the broker keeps it: the primary (else first) of their emails within the
        upstream's domains, else their userName when it is such an address, else ""."""
        emails = [entry for entry in document.get("emails") or [] if isinstance(entry, dict)]
        ordered = sorted(emails, key=lambda entry: entry.get("primary") is not True)
        for candidate in [entry.get("value") for entry in ordered] + [user_name]:
            if (
                isinstance(candidate, str)
                and len(candidate) <= 254
                and EMAIL.fullmatch(candidate)
                and self.trust.email_domains.allows(candidate)
            ):
                return candidate.lower()
        return ""

    @staticmethod
    def _display_name(document: dict[str, Any], user_name: str) -> str:
        given = document.get("name")
        name: dict[str, Any] = given if isinstance(given, dict) else {}
        parts = " ".join(part for part in (name.get("givenName"), name.get("familyName")) if isinstance(part, str))
        for candidate in (document.get("displayName"), name.get("formatted"), parts, user_name):
            if isinstance(candidate, str) and candidate.strip():
                return _text("displayName", candidate.strip())
        return user_name

    def _create_user(self, resource: Any) -> Person:
        scim_id = uuid.uuid4().hex
        joined = resource.external_id is not None
        subject = _text("externalId", resource.external_id) if joined else UNJOINED + scim_id  # the upstream's subject
        if joined and subject.startswith(UNJOINED):
            raise InvalidValueException(detail="externalId must be the person's subject at the identity provider")
        fields = self._fields(resource)
        existing = self.directory.get(self.upstream, subject)
        if existing is not None and existing.provisioned:
            raise UniquenessException(detail="A user with this externalId exists")
        now = self._clock()
        person = Person(
            upstream=self.upstream,
            subject=subject,
            scim_id=scim_id,
            created_at=now,
            updated_at=now,
            version=(existing.version if existing else 0) + 1,
            revoked_at=existing.revoked_at if existing else None,
            **fields,
        )
        revoking = existing is not None and person.disabled  # signed in before, provisioned inactive: end what
        if revoking:  # they hold, in AWS first, then in the same write that disables them, then in AWS again
            person = self._revoked(person)
        self._put(person, existing.version if existing else 0)
        if revoking:
            self._revoked_again(subject, DISABLED_REASON, person.email)
        audit.scim_change(
            self.audit,
            self.upstream,
            "user created" + (" (inactive)" if person.disabled else "") + (" (known from sign-in)" if existing else ""),
            subject=subject,
            email=person.email,
            detail=None if joined else "without an externalId: joined to no sign-in (nobody can sign in as this user)",
        )
        return person

    def _update_user(self, resource: Any, expected: int | None) -> Person:
        current = self._person(str(resource.id))
        if expected is not None and expected != current.version:
            raise PreconditionFailedException(detail="The user changed meanwhile")
        joined_as = None if current.subject.startswith(UNJOINED) else current.subject
        new_subject = None
        if resource.external_id != joined_as:  # added, changed or removed: the person is someone else at sign-in
            new_subject = UNJOINED + str(current.scim_id)
            if resource.external_id is not None:
                new_subject = _text("externalId", resource.external_id)
                if new_subject.startswith(UNJOINED) or self.directory.get(self.upstream, new_subject) is not None:
                    raise UniquenessException(detail="Another user (or person known from sign-in) has this externalId")
        updated = replace(current, **self._fields(resource), updated_at=self._clock(), version=current.version + 1)
        if new_subject is None and updated == replace(current, updated_at=updated.updated_at, version=updated.version):
            return current
        disabling = updated.disabled and not current.disabled
        if disabling:  # AWS first: a failure before the write leaves the IdP's retry something to do
            updated = self._revoked(updated)
        if new_subject is None:
            self._put(updated, current.version)
        else:
            updated = self._rejoined(current, updated, new_subject)
        if disabling:
            if new_subject is None:  # (a move records the former subject's revocation again itself)
                self._revoked_again(current.subject, DISABLED_REASON, updated.email)
            action = "user disabled"
        elif current.disabled and not updated.disabled:
            action = "user enabled"
        else:
            action = "user updated"
        audit.scim_change(self.audit, self.upstream, action, subject=current.subject, email=updated.email)
        return updated

    def _revoked(self, person: Person) -> Person:
        """The person disabled and revoked as of now, to be written in one write, after the revocation is in the
        outbox: a failure between the two leaves one revocation too many (the IdP retries), never one too few
        (a retry that found the person already disabled would change nothing), and a request in between finds
        the person as they were, then "disabled", never "revoked"."""
        revocation = self.revocations.revoke(
            self.upstream, person.subject, DISABLED_REASON, f"scim:{self.upstream}", in_directory=False
        )
        return replace(person, revoked_at=revocation.at)

    def _revoked_again(self, subject: str, reason: str, email: str) -> None:
        """The revocation once more, now that the directory write the guard reads has landed: its cutoff is after
        every issuance the guard (and its re-check after STS) still admitted, however long that write took."""
        again = f"{reason} (recorded again once the directory had the change)"  # the audit trail says why twice
        self.revocations.revoke(self.upstream, subject, again, f"scim:{self.upstream}", email=email, in_directory=False)

    def _rejoined(self, current: Person, updated: Person, new_subject: str) -> Person:
        """The user joined to another subject of the upstream, with its update: what the former subject holds is
        revoked first (it is no longer this user at sign-in), then the record moves (its SCIM id and groups with
        it), then the update is written under the new subject. A refused move has written nothing of the update;
        a refused update moves the record back: a refused request leaves the user as it was."""
        self.revocations.revoke(
            self.upstream, current.subject, REJOINED_REASON, f"scim:{self.upstream}", in_directory=False
        )  # the move ends the former subject's sessions; a refused update leaves them be
        try:
            moved = self.directory.rename(self.upstream, current.subject, new_subject)
        except DirectoryConflict:
            raise UniquenessException(
                detail="Another user (or person known from sign-in) has this externalId"
            ) from None
        if not moved:
            raise PreconditionFailedException(detail="The user changed meanwhile")
        rejoined = replace(updated, subject=new_subject)
        try:
            self._put(rejoined, current.version)
        except (UniquenessException, PreconditionFailedException):
            self.directory.rename(self.upstream, new_subject, current.subject)
            raise
        # once more now that the move (which the guard reads: the former subject is gone) has landed
        self._revoked_again(current.subject, DISABLED_REASON if rejoined.disabled else REJOINED_REASON, current.email)
        audit.scim_change(
            self.audit,
            self.upstream,
            "user joined to another subject",
            subject=new_subject,
            email=rejoined.email,
            detail=f"externalId changed (was {current.subject}): what the former subject held is revoked",
        )
        return rejoined

    def _put(self, person: Person, if_version: int) -> None:
        try:
            written = self.directory.put(person, if_version=if_version)
        except DirectoryConflict:
            raise UniquenessException(detail="A user with this userName exists") from None
        if not written:
            raise PreconditionFailedException(detail="The user changed meanwhile")

    # -- groups ---------------------------------------------------------------------------------------------

    def _members(self, resource: Any) -> frozenset[str]:
        members = resource.members or []
        if len(members) > MAX_GROUP_MEMBERS:
            raise InvalidValueException(detail=f"A group has at most {MAX_GROUP_MEMBERS} members here")
        values = set()
        for member in members:
            if member.type is not None and str(member.type) != "User":
                raise InvalidValueException(detail="Groups in groups are not supported: members must be users")
            if not isinstance(member.value, str) or not member.value:
                raise InvalidValueException(detail="A member needs the id of a user as its value")
            values.add(member.value)
        return frozenset(values)

    def _group_fields(self, resource: Any) -> dict[str, Any]:
        display_name = _text("displayName", resource.display_name)
        kept, _ = self.trust.groups.apply([display_name])
        external_id = resource.external_id
        if external_id is not None:
            external_id = _text("externalId", external_id)
        return {
            "display_name": display_name,
            "members": self._members(resource),
            "broker_group": next(iter(kept), None),
            "external_id": external_id,
        }

    def _put_group(self, group: DirectoryGroup, if_version: int) -> None:
        try:
            written = self.directory.put_group(group, if_version=if_version)
        except UnknownMember:
            raise InvalidValueException(detail="A member is not a user of this service (unknown id)") from None
        if not written:
            raise PreconditionFailedException(detail="The group changed meanwhile")

    def _create_group(self, resource: Any) -> DirectoryGroup:
        now = self._clock()
        group = DirectoryGroup(
            upstream=self.upstream,
            id=uuid.uuid4().hex,
            created_at=now,
            updated_at=now,
            version=1,
            **self._group_fields(resource),
        )
        self._put_group(group, 0)
        self._audit_group("group created", group, len(group.members), 0)
        return group

    def _update_group(self, resource: Any, expected: int | None) -> DirectoryGroup:
        current = self._stored_group(str(resource.id))
        if expected is not None and expected != current.version:
            raise PreconditionFailedException(detail="The group changed meanwhile")
        updated = replace(
            current, **self._group_fields(resource), updated_at=self._clock(), version=current.version + 1
        )
        if updated == replace(current, updated_at=updated.updated_at, version=updated.version):
            return current
        self._put_group(updated, current.version)
        added, removed = len(updated.members - current.members), len(current.members - updated.members)
        self._audit_group("group changed", updated, added, removed)
        return updated

    def _audit_group(self, action: str, group: DirectoryGroup, added: int, removed: int) -> None:
        if group.broker_group is None:
            detail = "outside the upstream's group mapping: its members get nothing from it"
        else:
            detail = f"broker group {group.broker_group}; members +{added} -{removed}"
        audit.scim_change(
            self.audit,
            self.upstream,
            action,
            group=group.display_name,
            detail=detail,
            outcome="success" if group.broker_group is not None else "dropped",
        )
