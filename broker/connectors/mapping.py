"""From upstream claims (OIDC) or attributes (SAML) to an `Identity`, the same way for both protocols.

Each IdP names things its own way, so which claim or attribute feeds which field is configuration
(`claims:` / `attributes:` in config/broker.yaml). OIDC claims are single values or lists, SAML attributes
are always lists: both are accepted for every field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from broker.core.identity import Identity
from broker.errors import LoginFailed
from sso_common.config import Node


@dataclass(frozen=True)
class IdentityMapping:
    email: str
    display_name: str
    groups: str
    department: str
    username: str | None = None  # None: the local part of the email address
    known_groups: frozenset[str] | None = None  # given: other upstream groups are dropped

    @classmethod
    def from_config(
        cls, node: Node, defaults: Mapping[str, str | None], known_groups: frozenset[str] | None
    ) -> IdentityMapping:
        """The `claims:` / `attributes:` mapping of an upstream entry; fields it leaves out take `defaults`."""
        node.only_keys(*defaults)
        names = {
            field: node.child(field).string() if field in node.mapping() else default
            for field, default in defaults.items()
        }
        return cls(**names, known_groups=known_groups)  # type: ignore[arg-type]

    def identity(
        self, subject: Any, values: Mapping[str, Any], *, authn_methods: frozenset[str], auth_time: int, issuer: str
    ) -> Identity:
        """LoginFailed when the upstream vouched for nobody usable (no subject or no email address)."""
        if not isinstance(subject, str) or not subject.strip():
            raise LoginFailed("The identity provider sent no subject identifier.")
        email = _one(values.get(self.email))
        if not email or "@" not in email:
            raise LoginFailed(f"The identity provider sent no email address ({self.email!r}).")
        username = (_one(values.get(self.username)) if self.username else None) or email.split("@", 1)[0]
        groups = frozenset(_many(values.get(self.groups)))
        if self.known_groups is not None:
            groups &= self.known_groups
        return Identity(
            subject=subject,
            username=username,
            email=email,
            display_name=_one(values.get(self.display_name)) or username,
            groups=groups,
            department=_one(values.get(self.department)) or "",
            authn_methods=authn_methods,
            issuer=issuer,
            auth_time=auth_time,
        )


def _many(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [item for item in value if isinstance(item, str) and item]
    return []


def _one(value: Any) -> str | None:
    values = _many(value)
    return values[0].strip() if values else None
