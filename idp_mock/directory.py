"""The corporate directory of Example Corp: employees and groups, loaded and validated at start-up from
config/directory.yaml, then changed at run time (`LiveDirectory`).

Run-time changes (disable, enable, add or delete a user; add or remove a group member; the admin API of
idp_mock/directory_admin.py and `idp-mock directory ...`) are records appended to a `ChangeLog` in the IdP's
stores: the directory of every worker process, of every start, is the file's plus every change in the log,
in order. The same log is the durable outbox of the SCIM pusher (idp_mock/scim_push.py): a change and its
push cannot part, because they are one record.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field, replace
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any, Protocol

import pyotp

from idp_mock.passwords import is_valid_hash
from sso_common.config import EMAIL_PATTERN, NAME_PATTERN, ConfigError, Node, load_yaml
from sso_common.store import ChangeLog

# Subjects are UUIDs derived from the username unless the file names one: stable across restarts.
_SUBJECT_NAMESPACE = uuid.UUID("0f6b2a8e-5d4c-4f0e-9a57-6c1e1d2b7c11")


@dataclass(frozen=True)
class Employee:
    username: str
    subject: str
    email: str
    name: str
    department: str
    groups: tuple[str, ...]
    password_hash: str = field(repr=False)
    totp_secret: str | None = field(default=None, repr=False)
    disabled: bool = False

    @property
    def mfa_required(self) -> bool:
        return self.totp_secret is not None


@dataclass(frozen=True)
class Directory:
    groups: dict[str, str]  # name -> description
    employees: dict[str, Employee]

    def find(self, username: str) -> Employee | None:
        return self.employees.get(username.strip().lower())


class DirectoryView(Protocol):
    """What the IdP reads of its directory: a loaded `Directory`, or the `LiveDirectory` with the changes."""

    @property
    def groups(self) -> dict[str, str]: ...

    @property
    def employees(self) -> dict[str, Employee]: ...

    def find(self, username: str) -> Employee | None: ...


def subject_for(username: str) -> str:
    return str(uuid.uuid5(_SUBJECT_NAMESPACE, username))


def load_directory(path: str | Path) -> Directory:
    root = load_yaml(path).only_keys("groups", "users")
    groups = {}
    for name, node in root.child("groups").items():
        Node(node.source, node.key, name).string(NAME_PATTERN, "a valid group name (lowercase, digits, . _ -)")
        description = node.child("description", "").value if isinstance(node.value, dict) else ""
        if isinstance(node.value, dict):
            node.only_keys("description")
        elif node.value is not None:
            raise node.error("must be a mapping with an optional description")
        groups[name] = description or ""

    employees: dict[str, Employee] = {}
    subjects: dict[str, str] = {}
    emails: dict[str, str] = {}
    users = root.child("users")
    if not isinstance(users.value, dict):
        raise users.error("must be a mapping of username to employee")
    for username, node in users.items():
        node.only_keys("id", "name", "email", "department", "groups", "password_hash", "totp_secret", "disabled")
        Node(node.source, node.key, username).string(NAME_PATTERN, "a valid username (lowercase, digits, . _ -)")
        email = node.child("email").string(EMAIL_PATTERN, "a valid email address").lower()
        if email in emails:
            raise node.child("email").error(f"{email} is already used by user {emails[email]}")
        member_of = node.child("groups", []).strings()
        for index, group in enumerate(member_of):
            if group not in groups:
                raise ConfigError(node.source, f"{node.key}.groups[{index}]", f"unknown group {group!r}")
        password_hash = node.child("password_hash").string()
        if not is_valid_hash(password_hash):
            raise node.child("password_hash").error(
                "must be an argon2id hash (generate one with: idp-mock hash-password)"
            )
        totp = node.child("totp_secret", None)
        totp_secret = None
        if totp.value is not None:
            totp_secret = totp.string(r"[A-Z2-7]{16,}=*", "a base32 TOTP secret of at least 16 characters")
            pyotp.TOTP(totp_secret).now()  # proves the secret decodes
        subject = str(node.child("id", subject_for(username)).value)
        if subject in subjects:
            raise node.child("id").error(f"id {subject} is already used by user {subjects[subject]}")
        employees[username] = Employee(
            username=username,
            subject=subject,
            email=email,
            name=node.child("name").string(),
            department=node.child("department", "").value or "",
            groups=tuple(member_of),
            password_hash=password_hash,
            totp_secret=totp_secret,
            disabled=node.child("disabled", False).boolean(),
        )
        subjects[subject], emails[email] = username, username
    return Directory(groups, employees)


# --- changes at run time ----------------------------------------------------------------------------------

OPERATIONS = ("add_user", "delete_user", "disable", "enable", "add_member", "remove_member")
MAX_CHANGES_READ = 1000  # records applied per read of the log


class ChangeRefused(ValueError):
    """A change that cannot apply to the directory as it is; the message says why (safe to show)."""


def _employee_record(employee: Employee) -> dict[str, Any]:
    return {
        "username": employee.username,
        "subject": employee.subject,
        "email": employee.email,
        "name": employee.name,
        "department": employee.department,
        "groups": list(employee.groups),
        "password_hash": employee.password_hash,
        "totp_secret": employee.totp_secret,
        "disabled": employee.disabled,
    }


def new_employee(directory: DirectoryView, fields: dict[str, Any]) -> Employee:
    """An employee to add, checked against the directory: ChangeRefused naming the field otherwise."""
    unknown = sorted(set(fields) - {known.name for known in dataclass_fields(Employee)})
    if unknown:  # a misspelt field ("department " or "group") would be dropped unseen
        raise ChangeRefused(f"{unknown[0][:64]!r}: not a field of a person")
    username = str(fields.get("username", "")).strip().lower()
    if not re.fullmatch(NAME_PATTERN, username):
        raise ChangeRefused("username: lowercase letters, digits and . _ - (at most 64), starting with a letter")
    if directory.find(username) is not None:
        raise ChangeRefused(f"username: {username} already exists")
    email = str(fields.get("email", "")).strip().lower()
    if not re.fullmatch(EMAIL_PATTERN, email):
        raise ChangeRefused("email: not a valid email address")
    subject = str(fields.get("subject") or subject_for(username))
    for other in directory.employees.values():
        if other.email == email:
            raise ChangeRefused(f"email: {email} is already used by {other.username}")
        if other.subject == subject:
            raise ChangeRefused(f"subject: already used by {other.username}")
    name = fields.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 256 or not name.isprintable():
        raise ChangeRefused("name: a printable name of at most 256 characters is required")
    department = fields.get("department") or ""
    if not isinstance(department, str) or len(department) > 256 or not department.isprintable():
        raise ChangeRefused("department: printable text of at most 256 characters")
    groups = fields.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, str) and g in directory.groups for g in groups):
        raise ChangeRefused(f"groups: a list of the directory's groups ({', '.join(directory.groups)})")
    password_hash = fields.get("password_hash")
    if not isinstance(password_hash, str) or not is_valid_hash(password_hash):
        raise ChangeRefused("password: required (an argon2id hash is stored, never the password)")
    totp_secret = fields.get("totp_secret")
    if totp_secret is not None and (
        not isinstance(totp_secret, str) or not re.fullmatch(r"[A-Z2-7]{16,}=*", totp_secret)
    ):
        raise ChangeRefused("totp_secret: a base32 secret of at least 16 characters")
    disabled = fields.get("disabled", False)
    if not isinstance(disabled, bool):
        raise ChangeRefused("disabled: true or false")
    return Employee(
        username=username,
        subject=subject,
        email=email,
        name=name.strip(),
        department=department,
        groups=tuple(dict.fromkeys(groups)),
        password_hash=password_hash,
        totp_secret=totp_secret,
        disabled=disabled,
    )


def checked_change(directory: DirectoryView, change: dict[str, Any]) -> dict[str, Any]:
    """The record of a change, checked against the directory as it is: ChangeRefused otherwise."""
    operation = change.get("op")
    if operation not in OPERATIONS:
        raise ChangeRefused(f"op: one of {', '.join(OPERATIONS)}")
    if operation == "add_user":
        return {"op": operation, "user": _employee_record(new_employee(directory, change.get("user") or {}))}
    username = str(change.get("username", "")).strip().lower()
    employee = directory.find(username)
    if employee is None:
        raise ChangeRefused(f"username: there is no user {username[:64]!r}")
    if operation in ("add_member", "remove_member"):
        group = change.get("group")
        if group not in directory.groups:
            raise ChangeRefused(f"group: one of the directory's groups ({', '.join(directory.groups)})")
        return {"op": operation, "username": username, "subject": employee.subject, "group": group}
    return {"op": operation, "username": username, "subject": employee.subject}


def apply_change(directory: Directory, change: dict[str, Any]) -> Directory:
    """The directory after one change of the log. A change that no longer applies (two admins added the same
    user at once, say: the second finds it there) leaves it as it is, so every reader arrives at the same state."""
    employees = dict(directory.employees)
    operation = change.get("op")
    if operation == "add_user":
        record = change.get("user") or {}
        try:
            employee = Employee(**{**record, "groups": tuple(record.get("groups", ()))})
        except TypeError:
            return directory
        taken = any(other.email == employee.email or other.subject == employee.subject for other in employees.values())
        if employee.username in employees or taken:
            return directory
        employees[employee.username] = employee
        return replace(directory, employees=employees)
    found = employees.get(str(change.get("username")))
    if found is None or found.subject != change.get("subject"):
        return directory
    employee = found
    if operation == "delete_user":
        del employees[employee.username]
    elif operation in ("disable", "enable"):
        employees[employee.username] = replace(employee, disabled=operation == "disable")
    elif operation in ("add_member", "remove_member") and change.get("group") in directory.groups:
        groups = [group for group in employee.groups if group != change["group"]]
        if operation == "add_member":
            groups.append(change["group"])
        employees[employee.username] = replace(employee, groups=tuple(groups))
    else:
        return directory
    return replace(directory, employees=employees)


class LiveDirectory:
    """The loaded directory plus every change of the log, caught up at each read (one indexed query when
    nothing changed), so every worker process sees a change at its next request."""

    def __init__(self, base: Directory, log: ChangeLog):
        self.base, self.log = base, log
        self._current, self._position = base, 0
        self._lock = threading.Lock()

    def current(self) -> Directory:
        if self.log.last() == self._position:
            return self._current
        with self._lock:
            while True:
                records = self.log.read(self._position, limit=MAX_CHANGES_READ)
                if not records:
                    return self._current
                for position, change in records:
                    self._current, self._position = apply_change(self._current, change), position

    @property
    def position(self) -> int:
        """The log position the directory read last reflects."""
        self.current()
        return self._position

    @property
    def groups(self) -> dict[str, str]:
        return self.current().groups

    @property
    def employees(self) -> dict[str, Employee]:
        return self.current().employees

    def find(self, username: str) -> Employee | None:
        return self.current().find(username)

    def change(self, change: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Check a change against the directory as it is now and append it: (its position, its record)."""
        record = checked_change(self.current(), change)
        return self.log.append(record), record
