"""The mock IdP as a SCIM client: it pushes its directory to each SCIM target (the portal's `/scim/v2`, one token
per upstream) with scim2-client, as Okta and Entra ID provision an application.

One pusher for the whole IdP: every worker process runs a `SingleWorker` (sso_common.lease), and only the holder
of the `scim-pusher` lease pushes. It works from the durable outbox, which is the directory's own change log
(idp_mock.directory): each target has a cursor (its last pushed position) in the state store, so a change is
pushed at least once, whatever restarts or takes over, and pushes are idempotent (they send the person's state,
or a membership, as it is now).
- Whenever a worker takes the lease (at start-up, or taking over), it first does a full sync of every target:
  the users of the directory created or replaced where they differ (a missing user created, an extra one
  deleted), then the groups (created, their members brought in line in PATCHes of at most `MEMBER_BATCH`);
  the cursor then moves to the log's position when the sync began.
- Then it follows the log: a change is pushed within a poll (`POLL`, 0.1 s) of being written. A disabled or
  enabled user is a PATCH of `active` (what Okta sends); an added user a POST then their memberships; a deleted
  user a DELETE; a membership a PATCH add or remove of one member (Entra ID's way). A target that fails is
  retried with backoff (0.2 s doubling to 10 s), without holding up the other targets; its last error and
  what is pending are in `status()` (the admin API's GET /admin/directory/sync).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import (
    Email,
    Error,
    Group,
    ListResponse,
    Name,
    PatchOp,
    ScimProvider,
    SearchRequest,
    User,
)

from idp_mock.directory import Directory, Employee, LiveDirectory
from sso_common.lease import Lease
from sso_common.store import ChangeLog, StateStore

log = logging.getLogger(__name__)

POLL = 0.1  # seconds between looks at the log
PAGE = 200  # users or groups per page when listing a target
MEMBER_BATCH = 500  # members per PATCH
BACKOFF_FIRST, BACKOFF_MAX = 0.2, 10.0
TIMEOUT = 10.0  # seconds for one request
CURSOR_KIND, STATUS_KIND, NOW_KIND = "scim_cursor", "scim_status", "scim_push_now"
STATE_TTL = 400 * 86400
PROVIDER_MODELS = (User, Group)


@dataclass(frozen=True)
class ScimTarget:
    """Where to push: a SCIM service's base URL and the bearer token it gave this IdP."""

    name: str
    url: str
    token: str = field(repr=False)


class PushFailed(Exception):
    """A target refused or failed a request; the message names the request and the status, never a token."""


def scim_client(target: ScimTarget) -> Any:
    """A scim2-client over httpx2 for a target (tests give the pusher their own, e.g. over WSGI). httpx2's own
    INFO line per request is left out of the log (the portal's access log has them). (httpx2 and scim2-client are
    imported with this module, before the IdP's workers fork: the first push, the last step of the demo's start,
    then finds them loaded.)"""
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    http = Client(
        base_url=target.url.rstrip("/") + "/", headers={"Authorization": f"Bearer {target.token}"}, timeout=TIMEOUT
    )
    return SyncSCIMClient(http, provider=ScimProvider(models=list(PROVIDER_MODELS)))


def desired_user(employee: Employee) -> User:
    given, _, family = employee.name.partition(" ")
    return User(
        user_name=employee.email,
        external_id=employee.subject,
        display_name=employee.name,
        name=Name(formatted=employee.name, given_name=given or None, family_name=family or None),
        emails=[Email(value=employee.email, type=Email.Type.work, primary=True)],
        active=not employee.disabled,
    )


def _same_user(current: Any, wanted: User) -> bool:
    def emails(user: Any) -> list:
        return [(e.value, e.primary) for e in user.emails or []]

    def name(user: Any) -> tuple:
        return (user.name.formatted, user.name.given_name, user.name.family_name) if user.name else (None,) * 3

    return (
        current.user_name == wanted.user_name
        and current.display_name == wanted.display_name
        and bool(current.active if current.active is not None else True) == bool(wanted.active)
        and emails(current) == emails(wanted)
        and name(current) == name(wanted)
    )


class TargetPusher:
    """Pushes to one target: the ids it gave to our users and groups (found again by externalId and
    displayName when unknown), and each kind of change."""

    def __init__(self, target: ScimTarget, client: Any):
        self.target, self.client = target, client
        self.users: dict[str, str] = {}  # subject -> the target's user id
        self.groups: dict[str, str] = {}  # group name -> the target's group id

    # -- requests ------------------------------------------------------------------------------------

    def _call(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            answer = method(*args, raise_scim_errors=False, **kwargs)
        except Exception as error:  # network, bad answers: scim2-client's exceptions carry no token
            raise PushFailed(f"{what}: {type(error).__name__}: {str(error)[:200]}") from None
        if isinstance(answer, Error):
            raise PushFailed(f"{what}: HTTP {answer.status} {answer.scim_type or ''} {str(answer.detail)[:200]}")
        return answer

    def _all(self, model: type, excluded: str | None = None) -> list[Any]:
        found: list[Any] = []
        start = 1
        while True:
            request = {"startIndex": start, "count": PAGE, **({"excludedAttributes": [excluded]} if excluded else {})}
            page = self._call(
                f"list {model.__name__}s",
                self.client.query,
                model,
                query_parameters=SearchRequest.model_validate(request),
            )
            found += page.resources or []
            if not page.resources or start - 1 + len(page.resources) >= (page.total_results or 0):
                return found
            start += len(page.resources)

    def _find(self, model: type, filter_text: str) -> Any | None:
        request: Any = SearchRequest.model_validate({"filter": filter_text})
        page = self._call(f"find {model.__name__}", self.client.query, model, query_parameters=request)
        return page.resources[0] if isinstance(page, ListResponse) and page.resources else None

    def user_id(self, employee: Employee) -> str | None:
        if employee.subject not in self.users:
            found = self._find(User, f"externalId eq {_quoted(employee.subject)}")
            if found is None:
                return None
            self.users[employee.subject] = found.id
        return self.users[employee.subject]

    def group_id(self, name: str) -> str | None:
        if name not in self.groups:
            found = self._find(Group, f"displayName eq {_quoted(name)}")
            if found is None:
                return None
            self.groups[name] = found.id
        return self.groups[name]

    # -- one user, one membership ------------------------------------------------------------------------

    def upsert_user(self, employee: Employee, current: Any | None = None, *, listed: bool = False) -> str:
        """The user as the directory has them: created, or replaced when different; their id. `listed`: the
        target's users were just listed, so a user not given as `current` is known to be missing there."""
        wanted = desired_user(employee)
        user_id = current.id if current is not None else None if listed else self.user_id(employee)
        if user_id is None:
            created = self._call(f"create user {employee.username}", self.client.create, wanted)
            self.users[employee.subject] = created.id
            return str(created.id)
        if current is None or not _same_user(current, wanted):
            wanted.id = user_id
            self._call(f"replace user {employee.username}", self.client.replace, wanted)
        return user_id

    def set_active(self, employee: Employee) -> None:
        user_id = self.user_id(employee)
        if user_id is None:
            self.upsert_user(employee)
            return
        patch = _patch(User, [{"op": "replace", "path": "active", "value": not employee.disabled}])
        self._call(f"set active of {employee.username}", self.client.modify, User, user_id, patch)

    def delete_user(self, subject: str, username: str) -> None:
        user_id = self.users.pop(subject, None)
        if user_id is None:
            found = self._find(User, f"externalId eq {_quoted(subject)}")
            user_id = found.id if found is not None else None
        if user_id is not None:
            answer = self.client.delete(User, user_id, raise_scim_errors=False)
            if isinstance(answer, Error) and answer.status != 404:
                raise PushFailed(f"delete user {username}: HTTP {answer.status}")

    def members(self, group: str, user_ids: list[str], add: bool) -> None:
        """Add or remove members of a group (created when missing), in PATCHes of at most MEMBER_BATCH."""
        group_id = self.group_id(group) or self._create_group(group)
        for start in range(0, len(user_ids), MEMBER_BATCH):
            batch = user_ids[start : start + MEMBER_BATCH]
            if add:
                operations = [
                    {"op": "add", "path": "members", "value": [{"value": uid, "type": "User"} for uid in batch]}
                ]
            else:
                operations = [{"op": "remove", "path": f"members[value eq {_quoted(uid)}]"} for uid in batch]
            what = f"{'add' if add else 'remove'} {len(batch)} member(s) of {group}"
            self._call(what, self.client.modify, Group, group_id, _patch(Group, operations))

    def _create_group(self, name: str) -> str:
        created = self._call(f"create group {name}", self.client.create, Group(display_name=name))
        self.groups[name] = created.id
        return str(created.id)

    # -- everything ------------------------------------------------------------------------------------

    def full_sync(self, directory: Directory, keep: Callable[[], bool]) -> dict[str, int]:
        """Bring the target in line with the directory; counts of what was done."""
        done = {"users created or replaced": 0, "users deleted": 0, "members added": 0, "members removed": 0}
        by_subject = {employee.subject: employee for employee in directory.employees.values()}
        existing = {user.external_id: user for user in self._all(User) if user.external_id}
        self.users = {subject: user.id for subject, user in existing.items()}
        for subject, employee in by_subject.items():
            if not keep():
                return done
            current = existing.get(subject)
            if current is None or not _same_user(current, desired_user(employee)):
                done["users created or replaced"] += 1
            self.upsert_user(employee, current, listed=True)
        for subject, user in existing.items():
            if subject not in by_subject:
                self._call("delete an extra user", self.client.delete, User, user.id)
                self.users.pop(subject, None)
                done["users deleted"] += 1
        groups = {group.display_name: group for group in self._all(Group)}
        self.groups = {name: group.id for name, group in groups.items()}
        for name in directory.groups:
            if not keep():
                return done
            wanted = {
                self.users[e.subject] for e in by_subject.values() if name in e.groups and e.subject in self.users
            }
            current = {member.value for member in (groups[name].members or [])} if name in groups else set()
            if name not in groups:
                self._create_group(name)
            self.members(name, sorted(wanted - current), add=True)
            self.members(name, sorted(current - wanted), add=False)
            done["members added"] += len(wanted - current)
            done["members removed"] += len(current - wanted)
        return done

    def push(self, change: dict[str, Any], directory: Directory) -> None:
        """One change of the log, sent as the directory has it now (so an old change sends current state)."""
        operation, username = change.get("op"), str(change.get("username") or "")
        employee = directory.find(username) if username else None
        if employee is not None and employee.subject != change.get("subject"):
            employee = None  # the username was reused by someone else since
        if operation == "add_user":
            record = change.get("user") or {}
            employee = directory.find(str(record.get("username", "")))
            if employee is None or employee.subject != record.get("subject"):
                return  # deleted (or replaced) since: that later change says so
            user_id = self.upsert_user(employee)
            for group in employee.groups:
                self.members(group, [user_id], add=True)
        elif operation == "delete_user":
            if employee is None:
                self.delete_user(str(change.get("subject")), username)
        elif operation in ("disable", "enable") and employee is not None:
            self.set_active(employee)
        elif operation in ("add_member", "remove_member") and employee is not None:
            group = str(change.get("group"))
            user_id = self.user_id(employee) or self.upsert_user(employee)
            self.members(group, [user_id], add=group in employee.groups)


def _patch(model: type, operations: list[dict[str, Any]]) -> Any:
    """A PatchOp for `model` (scim2-models validates the operations and their paths)."""
    return PatchOp[model].model_validate(  # type: ignore[valid-type]
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations}
    )


def _quoted(value: str) -> str:
    """A string as a SCIM filter literal (JSON string syntax): quotes and backslashes escaped."""
    import json

    return json.dumps(value)


class ScimPusher:
    """The lease holder's work (see the module docstring): `step(lease)` for `SingleWorker`."""

    def __init__(
        self,
        directory: LiveDirectory,
        log_: ChangeLog,
        store: StateStore,
        targets: list[ScimTarget],
        client_for: Callable[[ScimTarget], Any] = scim_client,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.directory, self.log, self.store, self.targets = directory, log_, store, targets
        self._client_for, self._clock = client_for, clock
        self._pushers: dict[str, TargetPusher] = {}
        self._synced: set[str] = set()
        self._retry_at: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        self._tenure = 0

    def _pusher(self, target: ScimTarget) -> TargetPusher:
        if target.name not in self._pushers:
            self._pushers[target.name] = TargetPusher(target, self._client_for(target))
        return self._pushers[target.name]

    def step(self, lease: Lease | None = None) -> float:
        keep = lease.keep if lease is not None else (lambda: True)
        tenure = lease.tenure if lease is not None else 0
        if tenure != self._tenure:
            self._synced.clear()  # a new tenure of the lease (taken at start-up, or over): sync everything first
            self._tenure = tenure
        if self.store.take(NOW_KIND, "targets") is not None:  # asked to retry now (POST /admin/directory/sync)
            self._retry_at.clear()
            self._backoff.clear()
        for target in self.targets:
            if self._clock() < self._retry_at.get(target.name, 0.0) or not keep():
                continue
            try:
                self._step_target(target, keep)
            except PushFailed as failure:
                self._failed(target, str(failure))
            else:
                self._backoff.pop(target.name, None)
        return POLL

    def _step_target(self, target: ScimTarget, keep: Callable[[], bool]) -> None:
        pusher = self._pusher(target)
        if target.name not in self._synced:
            position = self.log.last()
            started = time.monotonic()
            done = pusher.full_sync(self.directory.current(), keep)
            if not keep():
                return
            self._synced.add(target.name)
            self._advance(target, position)
            log.info(
                "full SCIM sync of %s in %.1f s: %s",
                target.name,
                time.monotonic() - started,
                ", ".join(f"{count} {what}" for what, count in done.items()),
            )
            return
        cursor = self.cursor(target)
        for position, change in self.log.read(cursor, limit=100):
            if not keep():
                return
            pusher.push(change, self.directory.current())
            self._advance(target, position)

    def cursor(self, target: ScimTarget) -> int:
        return int((self.store.get(CURSOR_KIND, target.name) or {"position": 0})["position"])

    def _advance(self, target: ScimTarget, position: int) -> None:
        self.store.put(CURSOR_KIND, target.name, {"position": position}, STATE_TTL)
        self.store.put(STATUS_KIND, target.name, {"error": None, "at": time.time(), "url": target.url}, STATE_TTL)

    def _failed(self, target: ScimTarget, problem: str) -> None:
        delay = min(BACKOFF_MAX, self._backoff.get(target.name, BACKOFF_FIRST / 2) * 2)
        self._backoff[target.name] = delay
        self._retry_at[target.name] = self._clock() + delay
        self._pushers.pop(target.name, None)  # its ids may be stale: found again
        log.warning("SCIM push to %s failed (retry in %.1f s): %s", target.name, delay, problem)
        self.store.put(STATUS_KIND, target.name, {"error": problem, "at": time.time(), "url": target.url}, STATE_TTL)


def push_now(store: StateStore) -> None:
    """Ask the pusher, whichever process holds its lease, to retry every target at its next poll."""
    store.put(NOW_KIND, "targets", {}, 60)


def sync_status(store: StateStore, log_: ChangeLog, targets: list[ScimTarget]) -> dict[str, Any]:
    """What the admin API and `idp-mock directory status` show: per target, how far it is pushed and its last
    error, and where the pusher sends it (as the running IdP's settings say: the command's own environment may
    name other ports)."""
    last = log_.last()
    listed = []
    for target in targets:
        cursor = int((store.get(CURSOR_KIND, target.name) or {"position": 0})["position"])
        status = store.get(STATUS_KIND, target.name) or {}
        listed.append(
            {
                "name": target.name,
                "url": status.get("url", target.url),
                "pushed_position": cursor,
                "pending_changes": max(0, last - cursor),
                "synced": cursor > 0 or (status.get("error") is None and "at" in status),
                "last_error": status.get("error"),
                "last_update": status.get("at"),
            }
        )
    return {"log_position": last, "targets": listed}
