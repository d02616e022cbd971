"""The corporate directory of Example Corp: employees and groups, loaded and validated at start-up."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pyotp

from idp_mock.passwords import is_valid_hash
from sso_common.config import EMAIL_PATTERN, NAME_PATTERN, ConfigError, Node, load_yaml

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
        subject = str(node.child("id", str(uuid.uuid5(_SUBJECT_NAMESPACE, username))).value)
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
