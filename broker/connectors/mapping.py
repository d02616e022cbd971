"""From upstream claims (OIDC) or attributes (SAML) to an `Identity`, the same way for both protocols.

Each IdP names things its own way, so which claim or attribute feeds which field is configuration
(`claims:` / `attributes:` in config/broker.yaml): a name, or a list of names (the first one present
wins; groups are collected from all of them), URIs included (ADFS and Entra ID send
`http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress`, `.../claims/groups`...). OIDC claims
are single values or lists, SAML attributes are always lists: both are accepted for every field.

Then the hygiene rules and the upstream's trust boundary (broker.connectors.trust), all pure:
- the subject, email address, username, display name, department and every group must be text without
  control or invisible formatting characters and within a length limit, or the sign-in is refused (with
  a reason that names the field, never echoes the value);
- the email address must be one well-formed address in one of the upstream's domains; it is kept in
  lower case, as every mainstream IdP compares addresses;
- `email_verified` by the upstream's rule; MFA by its recognised values (and refused when required);
- groups go through the upstream's group mapping; those it has no place for are dropped and reported,
  so the sign-in audit can name them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from broker.connectors.trust import UpstreamTrust
from broker.core import evidence
from broker.core.evidence import BROKER
from broker.core.identity import Identity, LogoutHint, UpstreamLogin
from broker.errors import LoginFailed
from sso_common.config import Node

LIMITS = {"subject": 256, "email": 254, "username": 128, "display_name": 256, "department": 256, "group": 256}
MAX_GROUPS = 1000
FIELDS = ("email", "email_verified", "display_name", "username", "groups", "department")
_WHAT = {
    "subject": "subject identifier",
    "email": "email address",
    "username": "username",
    "display_name": "display name",
    "department": "department",
    "group": "group name",
}
# RFC 5322 dot-atom local part (no quoted strings), and a dotted domain name.
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_DOMAIN = r"([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]{0,62}[A-Za-z0-9]"
EMAIL = re.compile(rf"(?=[^@]{{1,64}}@){_LOCAL}@{_DOMAIN}")


@dataclass(frozen=True)
class Authentication:
    """How the upstream says the person authenticated: OIDC amr/acr, SAML AuthnContextClassRefs."""

    time: int
    amr: frozenset[str] = frozenset()
    acr: str | None = None
    contexts: frozenset[str] = frozenset()


Names = tuple[str, ...]


def _names(value: str | Names | None) -> Names:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True, kw_only=True)
class IdentityMapping:
    """Which claims or attributes feed the Identity (each field: names, the first present wins; `username`
    empty: the email's local part), and the upstream's trust boundary."""

    email: Names
    display_name: Names
    groups: Names
    department: Names
    trust: UpstreamTrust
    username: Names = ()
    email_verified: Names = ("email_verified",)
    extra: Mapping[str, Names] = field(default_factory=dict)  # protocol-specific names (SAML `subject`)

    def __post_init__(self) -> None:
        for name in FIELDS:  # a single name is a list of one
            object.__setattr__(self, name, _names(getattr(self, name)))

    @classmethod
    def from_config(
        cls, node: Node, defaults: Mapping[str, str | None], trust: UpstreamTrust, extra: tuple[str, ...] = ()
    ) -> IdentityMapping:
        """The `claims:` / `attributes:` mapping of an upstream entry; fields it leaves out take `defaults`.
        `extra` are protocol-specific keys (SAML's `subject`)."""
        node.only_keys(*defaults, *extra)
        names: dict[str, Names] = {}
        for key in (*defaults, *extra):
            child = node.child(key, defaults.get(key))
            if child.value is None:
                names[key] = ()
            elif isinstance(child.value, list):
                names[key] = tuple(child.strings())
                if not names[key]:
                    raise child.error("must name at least one claim or attribute")
            else:
                names[key] = (child.string(),)
        extras = {key: names.pop(key) for key in extra}
        if trust.email_verified == "required" and not names.get("email_verified"):
            raise node.child("email_verified", None).error(
                "must name the claim or attribute that says so, since the upstream's email_verified is required"
            )
        return cls(**names, trust=trust, extra=extras)

    def describe(self) -> list[str]:
        """Which names feed which field, for `broker check-config`."""
        lines = []
        for name in FIELDS:
            sources = getattr(self, name)
            shown = " or ".join(sources) if sources else "(the email's local part)" if name == "username" else "-"
            lines.append(f"{name} <- {shown}")
        return lines

    def login(
        self, subject: Any, values: Mapping[str, Any], *, authn: Authentication, issuer: str, **hint: Any
    ) -> UpstreamLogin:
        """The verified values as an UpstreamLogin (with `hint` as its LogoutHint fields), or LoginFailed
        naming what is refused."""
        identity, dropped = self.identity(subject, values, authn=authn, issuer=issuer)
        return UpstreamLogin(identity, LogoutHint(**hint), dropped)

    def identity(
        self, subject: Any, values: Mapping[str, Any], *, authn: Authentication, issuer: str
    ) -> tuple[Identity, frozenset[str]]:
        """(the Identity, the upstream groups dropped by the mapping); LoginFailed when the upstream vouched
        for nobody usable, or for something outside its trust boundary. Each check, and where each field came
        from, is recorded for the explanation (broker.core.evidence) as it is made."""
        trust = self.trust
        record = evidence.recorder()
        section = record.section("identity", "The Identity and the trust boundary")
        section.plan(
            ("subject identifier", BROKER, "text without control characters, at most 256 characters"),
            ("email address", BROKER, "one well-formed address"),
            ("email domain allowed", BROKER, str(trust.email_domains)),
            ("email_verified", BROKER, f"rule {trust.email_verified}"),
            ("username", BROKER, "one text value (default: the email's local part)"),
            ("groups", BROKER, f"text values, at most {MAX_GROUPS}; then the upstream's group mapping"),
            ("second factor", BROKER, trust.mfa.describe()),
            ("display name and department", BROKER, "text without control characters"),
        )
        with section.run("subject identifier"):
            if subject is None or (isinstance(subject, str) and not subject.strip()):
                raise LoginFailed("The identity provider sent no subject identifier.")
            subject = _text("subject", subject, strip=False)
            section.passed("subject identifier", received=subject)
        with section.run("email address"):
            email = self._email(values)
            section.passed("email address", received=email)
        with section.run("email domain allowed", received=email.rsplit("@", 1)[-1]):
            if not trust.email_domains.allows(email):
                raise LoginFailed(
                    f"This identity provider may not vouch for {email}: it may assert addresses at "
                    f"{trust.email_domains} only."
                )
        with section.run("email_verified", received=self._shown(self.email_verified, values)):
            self._check_email_verified(values)
        with section.run("username"):
            username = self._single("username", values) or email.split("@", 1)[0]
            section.passed("username", received=username)
        with section.run("groups"):
            upstream_groups = self._groups(values)
            groups, dropped = trust.groups.apply(upstream_groups)
            section.passed(
                "groups",
                received=f"{len(upstream_groups)} sent: {', '.join(upstream_groups) or 'none'}",
                detail=f"kept {len(groups)}, dropped {len(dropped)}"
                + (f" ({', '.join(sorted(dropped))})" if dropped else ""),
            )
        mfa = trust.mfa.recognises(authn.amr, authn.acr, authn.contexts)
        reported = ", ".join(sorted(authn.amr | authn.contexts | ({authn.acr} if authn.acr else set()))) or "nothing"
        with section.run("second factor", received=f"reported: {reported}; recognised: {'yes' if mfa else 'no'}"):
            if trust.mfa.require and not mfa:
                raise LoginFailed(
                    "This identity provider did not report a second factor (multi-factor authentication), which "
                    "the portal requires for it. Sign in again with your verification code or security key."
                )
        with section.run("display name and department"):
            display_name = self._single("display_name", values, first=True) or username
            department = self._single("department", values, first=True) or ""
        identity = Identity(
            subject=subject,
            username=username,
            email=email,
            display_name=display_name,
            groups=groups,
            department=department,
            authn_methods=frozenset({"pwd", "mfa"} if mfa else {"pwd"}),
            issuer=issuer,
            auth_time=authn.time,
        )
        self._record_sources(section, identity, values, record.notes)
        return identity, dropped

    def _source(self, field_name: str, values: Mapping[str, Any], notes: Mapping[str, Any]) -> str:
        """Which claim or attribute a field was taken from, for the explanation."""
        kind = notes.get("value_kind", "claim or attribute")
        from_userinfo = set(notes.get("userinfo_claims", ()))
        for name in getattr(self, field_name):
            if name in values and values[name] is not None:
                return f"{kind} {name!r}" + (" (userinfo)" if name in from_userinfo else "")
        return ""

    def _record_sources(
        self, section: evidence.SectionRecorder, identity: Identity, values: Mapping[str, Any], notes: Mapping[str, Any]
    ) -> None:
        sources = {
            "subject": notes.get("subject_source", "the subject"),
            "email": self._source("email", values, notes),
            "username": self._source("username", values, notes) or "the email address's local part",
            "display_name": self._source("display_name", values, notes) or "the username (none sent)",
            "department": self._source("department", values, notes) or "none sent",
            "groups": (self._source("groups", values, notes) or "none sent") + ", through the group mapping",
        }
        for name, source in sources.items():
            value = getattr(identity, name)
            shown = ", ".join(sorted(value)) if isinstance(value, frozenset) else value
            section.fact(name, shown or "(empty)", source)
        section.fact("second factor", "yes" if identity.mfa else "no", "the upstream's MFA rule (mfa:)")
        section.fact("issuer", identity.issuer, "the upstream's configuration")
        section.fact("auth_time", _epoch(identity.auth_time), "when the upstream authenticated you")

    def _shown(self, names: Names, values: Mapping[str, Any]) -> str:
        found = self._values(names, values)
        return "(absent)" if found is None else ", ".join(str(value)[:40] for value in found[:3])

    # -- fields ------------------------------------------------------------------------------------

    def _values(self, names: Names, values: Mapping[str, Any]) -> list[Any] | None:
        """The values of the first name present, as a list (None when no name is present)."""
        for name in names:
            if name in values and values[name] is not None:
                value = values[name]
                return list(value) if isinstance(value, (list, tuple)) else [value]
        return None

    def _single(self, field_name: str, values: Mapping[str, Any], *, first: bool = False) -> str | None:
        """One text value; several different ones are refused unless `first` (descriptive fields)."""
        found = self._values(getattr(self, field_name), values)
        if not found:
            return None
        texts = [_text(field_name, value) for value in found]
        texts = [text for text in texts if text]
        if len(set(texts)) > 1 and not first:
            raise LoginFailed(f"The identity provider sent several values as the {_WHAT[field_name]}.")
        return texts[0] if texts else None

    def _email(self, values: Mapping[str, Any]) -> str:
        email = self._single("email", values)
        if not email:
            shown = " or ".join(repr(name) for name in self.email)
            raise LoginFailed(f"The identity provider sent no email address ({shown}).")
        if len(email) > LIMITS["email"] or not EMAIL.fullmatch(email):
            raise LoginFailed("The identity provider sent an email address that is not well-formed.")
        return email.lower()

    def _check_email_verified(self, values: Mapping[str, Any]) -> None:
        rule = self.trust.email_verified
        if rule == "ignore":
            return
        found = self._values(self.email_verified, values)
        verified = _boolean(found[0]) if found and len(found) == 1 else ("malformed" if found else None)
        if verified == "malformed":
            raise LoginFailed("The identity provider sent an email_verified value that is not true or false.")
        if verified is False:
            raise LoginFailed("The identity provider says your email address is not verified.")
        if verified is None and rule == "required":
            raise LoginFailed("The identity provider did not say that your email address is verified.")

    def _groups(self, values: Mapping[str, Any]) -> list[str]:
        groups: list[str] = []
        for name in self.groups:
            value = values.get(name)
            if value is None:
                continue
            items = value if isinstance(value, (list, tuple)) else [value]
            for item in items:
                text = _text("group", item)
                if text:
                    groups.append(text)
        if len(groups) > MAX_GROUPS:
            raise LoginFailed(f"The identity provider sent more than {MAX_GROUPS} groups.")
        return groups


def _text(what: str, value: Any, *, strip: bool = True) -> str:
    """A claim value as text: refused when it is not a string, holds control or invisible formatting
    characters, or is too long. The reason names the field, never the value."""
    label = _WHAT[what]
    if not isinstance(value, str):
        raise LoginFailed(f"The identity provider sent a {label} that is not text ({_kind(value)}).")
    if any(unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp") for ch in value):
        raise LoginFailed(f"The identity provider sent a {label} with control or invisible characters.")
    if len(value) > LIMITS[what]:
        raise LoginFailed(f"The identity provider sent a {label} longer than {LIMITS[what]} characters.")
    return value.strip() if strip else value


def _epoch(value: int) -> str:
    try:
        return f"{value} ({datetime.fromtimestamp(value, UTC):%Y-%m-%d %H:%M:%S} UTC)"
    except (OverflowError, OSError, ValueError):
        return str(value)


def _kind(value: Any) -> str:
    return {bool: "true/false", int: "a number", float: "a number", dict: "an object", list: "a list"}.get(
        type(value), type(value).__name__
    )


def _boolean(value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return "malformed"
