"""What each upstream may vouch for: the trust boundary, one per upstream (pure rules, no I/O).

An upstream identity provider is trusted only for what its entry in broker.yaml says:

- `allowed_email_domains`: the addresses it may assert (`example.com` exactly, `*.example.com` for
  its subdomains). Required: a sign-in with any other address is refused. Upstreams of different
  directories must have disjoint domains (checked at start-up), so an address names one person.
- `directory`: upstreams that reach the same directory of people (Example Corp over OIDC and over
  SAML) say so with the same name; their domains may overlap and an address is the same person
  through either. Default: the upstream's own id, a directory of its own.
- `groups`: which of its groups become which broker group. `map` (upstream name -> broker name),
  `keep` (the same name at the broker) and `prefix` (any other group g becomes `<prefix>g`). Groups
  outside the mapping are dropped (and the drop is audited); without a mapping, no group passes.
  A broker group belongs to one directory: two directories can never produce the same name (checked at
  start-up), so one upstream's groups never become another's.
- `email_verified`: `if_present` (default: an explicit false is refused, an absent claim accepted, as
  Entra ID and SAML IdPs send none), `required` (must be present and true) or `ignore` (the opt-out).
- `mfa`: which authentication values count as a second factor (OIDC `amr` and `acr`; SAML
  AuthnContextClassRef `authn_contexts`, or `amr` values of the attribute `amr_attribute`, as ADFS and
  Entra ID send `.../claims/authnmethodsreferences`; none by default: an upstream is not trusted for
  MFA until configured), and `require: true` to refuse sign-ins without one.

`check_boundaries` checks the upstreams against each other; `GroupCatalogue` is what access.yaml's
assignments are validated against (the groups the mappings can produce).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from broker.core import evidence
from sso_common.config import Node

DOMAIN_PATTERN = r"(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}[a-z0-9]"
DIRECTORY_PATTERN = r"[a-z0-9][a-z0-9-]{0,62}"
GROUP_NAME_MAX = 256
PREFIX_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:/+=@-]{0,63}"
EMAIL_VERIFIED_RULES = ("if_present", "required", "ignore")
# MFA settings per protocol: OIDC reads amr and acr, SAML the AuthnContextClassRef.
MFA_KEYS = {"oidc": ("amr", "acr", "require"), "saml": ("authn_contexts", "amr_attribute", "amr", "require")}
TRUST_KEYS = ("directory", "allowed_email_domains", "groups", "email_verified", "mfa")


# -- email domains ---------------------------------------------------------------------------------


def domain_allowed(domain: str, pattern: str) -> bool:
    """`example.com` allows exactly that domain; `*.example.com` its subdomains (not itself)."""
    domain = domain.lower()
    if pattern.startswith("*."):
        return domain.endswith(pattern[1:]) and len(domain) > len(pattern) - 1
    return domain == pattern


def patterns_overlap(a: str, b: str) -> bool:
    """Whether some domain is allowed by both patterns."""
    if not a.startswith("*.") and not b.startswith("*."):
        return a == b
    if not a.startswith("*."):
        return domain_allowed(a, b)
    if not b.startswith("*."):
        return domain_allowed(b, a)
    base_a, base_b = a[2:], b[2:]
    return base_a == base_b or base_a.endswith("." + base_b) or base_b.endswith("." + base_a)


@dataclass(frozen=True)
class EmailDomains:
    patterns: tuple[str, ...]

    def allows(self, email: str) -> bool:
        domain = email.rpartition("@")[2]
        return any(domain_allowed(domain, pattern) for pattern in self.patterns)

    def overlap(self, other: EmailDomains) -> tuple[str, str] | None:
        for mine in self.patterns:
            for theirs in other.patterns:
                if patterns_overlap(mine, theirs):
                    return mine, theirs
        return None

    def __str__(self) -> str:
        return ", ".join(self.patterns)


# -- groups ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupMapping:
    """Upstream group names -> broker group names. `mapped` holds `map` and `keep` (kept as themselves);
    `prefix`, when set, takes every other group g as `<prefix>g`."""

    mapped: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    prefix: str | None = None

    def apply(self, groups: Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
        """(the broker groups, the upstream groups dropped because the mapping has no place for them)."""
        kept: set[str] = set()
        dropped: set[str] = set()
        record = evidence.recorder()  # what became of each group, for the explanation
        for group in groups:
            if group in self.mapped:
                kept.add(self.mapped[group])
                record.group(group, self.mapped[group], "keep" if self.mapped[group] == group else "map")
            elif self.prefix is not None:
                kept.add(self.prefix + group)
                record.group(group, self.prefix + group, f"prefix {self.prefix}")
            else:
                dropped.add(group)
                record.group(group, None, "no rule: dropped")
        return frozenset(kept), frozenset(dropped)

    def can_produce(self, group: str) -> bool:
        return group in self.outputs or (
            self.prefix is not None and group.startswith(self.prefix) and len(group) > len(self.prefix)
        )

    @property
    def outputs(self) -> frozenset[str]:
        return frozenset(self.mapped.values())

    def describe(self) -> list[str]:
        """One line per rule, for `broker check-config`."""
        lines = [
            f"{upstream} -> {broker}" if upstream != broker else f"{upstream} (kept)"
            for upstream, broker in sorted(self.mapped.items())
        ]
        if self.prefix is not None:
            lines.append(f"any other group g -> {self.prefix}g")
        else:
            lines.append("any other group: dropped (audited)")
        return lines

    @classmethod
    def from_config(cls, node: Node) -> GroupMapping:
        if node.value is None:
            return cls()
        node.only_keys("map", "keep", "prefix")
        mapped: dict[str, str] = {}
        for name in node.child("keep", []).strings():
            _group_name(node.child("keep"), name)
            mapped[name] = name
        for upstream, target in node.child("map", {}).items():
            if upstream in mapped:
                raise target.error(f"{upstream!r} is also in groups.keep")
            _group_name(target, upstream)
            mapped[upstream] = _group_name(target, target.string())
        prefix_node = node.child("prefix", None)
        prefix = None
        if prefix_node.value is not None:
            prefix = prefix_node.string(PREFIX_PATTERN, "a prefix of letters, digits and ._:/+=@- (at most 64)")
        return cls(MappingProxyType(mapped), prefix)


def _group_name(node: Node, name: str) -> str:
    if not name or len(name) > GROUP_NAME_MAX or any(not ch.isprintable() for ch in name):
        raise node.error(f"{name!r} is not a group name (printable, 1 to {GROUP_NAME_MAX} characters)")
    return name


# -- MFA -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MfaPolicy:
    """Which authentication values this upstream is trusted to report as a second factor."""

    amr: frozenset[str] = frozenset()
    acr: frozenset[str] = frozenset()
    authn_contexts: frozenset[str] = frozenset()
    require: bool = False
    amr_attribute: str | None = None  # SAML: the attribute holding authentication method references

    def recognises(self, amr: Iterable[str] = (), acr: str | None = None, authn_contexts: Iterable[str] = ()) -> bool:
        return bool(
            self.amr & set(amr) or (acr is not None and acr in self.acr) or self.authn_contexts & set(authn_contexts)
        )

    def describe(self) -> str:
        parts = [
            f"{name} in [{', '.join(sorted(values))}]"
            for name, values in (
                (f"{self.amr_attribute} (amr)" if self.amr_attribute else "amr", self.amr),
                ("acr", self.acr),
                ("authn context", self.authn_contexts),
            )
            if values
        ]
        what = " or ".join(parts) if parts else "never (no values configured)"
        return f"second factor recognised when {what}" + ("; required for every sign-in" if self.require else "")

    @classmethod
    def from_config(cls, node: Node, protocol: str) -> MfaPolicy:
        if node.value is None:
            return cls()
        node.only_keys(*MFA_KEYS.get(protocol, ("amr", "acr", "authn_contexts", "amr_attribute", "require")))
        attribute = node.child("amr_attribute", None)
        policy = cls(
            amr=frozenset(node.child("amr", []).strings()),
            acr=frozenset(node.child("acr", []).strings()),
            authn_contexts=frozenset(node.child("authn_contexts", []).strings()),
            require=node.child("require", False).boolean(),
            amr_attribute=attribute.string() if attribute.value is not None else None,
        )
        if protocol == "saml" and policy.amr and policy.amr_attribute is None:
            raise node.child("amr_attribute", None).error("is needed with mfa.amr: the attribute the values come in")
        if policy.require and not (policy.amr or policy.acr or policy.authn_contexts):
            raise node.child("require").error("needs the values that count as a second factor (amr, acr, ...)")
        return policy


# -- one upstream's boundary -----------------------------------------------------------------------


@dataclass(frozen=True)
class UpstreamTrust:
    upstream: str
    directory: str
    email_domains: EmailDomains
    groups: GroupMapping = GroupMapping()
    email_verified: str = "if_present"
    mfa: MfaPolicy = MfaPolicy()

    @classmethod
    def from_config(cls, node: Node, upstream: str, protocol: str) -> UpstreamTrust:
        """The trust keys of one `upstreams:` entry (the connector checks the entry's other keys)."""
        domains_node = node.child("allowed_email_domains")
        patterns = []
        for element in domains_node.elements():
            pattern = element.string().lower()
            if not re.fullmatch(DOMAIN_PATTERN, pattern):
                raise element.error(f"{pattern!r} is not a domain such as example.com or *.example.com")
            patterns.append(pattern)
        if not patterns:
            raise domains_node.error("must list at least one domain (the addresses this upstream may assert)")
        rule = node.child("email_verified", "if_present")
        if rule.string() not in EMAIL_VERIFIED_RULES:
            raise rule.error(f"must be one of {', '.join(EMAIL_VERIFIED_RULES)}")
        return cls(
            upstream=upstream,
            directory=node.child("directory", upstream).string(DIRECTORY_PATTERN, "a directory name (a-z, 0-9, -)"),
            email_domains=EmailDomains(tuple(patterns)),
            groups=GroupMapping.from_config(node.child("groups", None)),
            email_verified=rule.string(),
            mfa=MfaPolicy.from_config(node.child("mfa", None), protocol),
        )

    def describe(self) -> list[str]:
        """What `broker check-config` prints for this upstream."""
        return [
            f"directory: {self.directory}",
            f"email domains: {self.email_domains}",
            f"email_verified: {self.email_verified}",
            f"mfa: {self.mfa.describe()}",
            "groups:",
            *(f"  {line}" for line in self.groups.describe()),
        ]


def read_trusts(node: Node) -> list[UpstreamTrust]:
    """The trust boundary of every entry of `upstreams:`, checked against each other (ConfigError)."""
    trusts = [
        (UpstreamTrust.from_config(element, element.child("id").string(), element.child("type").string()), element)
        for element in node.elements()
    ]
    check_boundaries(trusts)
    return [trust for trust, _ in trusts]


def check_boundaries(trusts: list[tuple[UpstreamTrust, Node]]) -> None:
    """ConfigError when two upstreams of different directories could assert the same address, or produce
    the same broker group (or one's prefix could produce the other's group)."""
    for index, (mine, node) in enumerate(trusts):
        for theirs, _ in trusts[:index]:
            if mine.directory == theirs.directory:
                continue
            overlap = mine.email_domains.overlap(theirs.email_domains)
            if overlap:
                raise node.child("allowed_email_domains").error(
                    f"{overlap[0]} overlaps {overlap[1]} of upstream {theirs.upstream!r}, another directory: an "
                    "address must name one person (give both the same `directory` if they are one directory)"
                )
            clash = _group_clash(mine.groups, theirs.groups) or _group_clash(theirs.groups, mine.groups)
            if clash:
                raise node.child("groups").error(
                    f"{clash} could also come from upstream {theirs.upstream!r}, another directory: a broker group "
                    "belongs to one directory (map these groups to other names, or use another prefix)"
                )


def _group_clash(a: GroupMapping, b: GroupMapping) -> str | None:
    for group in sorted(a.outputs):
        if b.can_produce(group):
            return f"group {group!r}"
    if a.prefix is not None and b.prefix is not None:
        if a.prefix.startswith(b.prefix) or b.prefix.startswith(a.prefix):
            return f"prefix {a.prefix!r}"
    return None


class GroupCatalogue:
    """The broker groups the upstreams' mappings can produce: what access.yaml may assign."""

    def __init__(self, trusts: Iterable[UpstreamTrust]):
        self.trusts = tuple(trusts)

    def __contains__(self, group: object) -> bool:
        return isinstance(group, str) and any(trust.groups.can_produce(group) for trust in self.trusts)

    def _names(self) -> list[str]:
        return sorted({group for trust in self.trusts for group in trust.groups.outputs})

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        """The explicitly named groups (prefixes can produce any number more)."""
        return len(self._names())

    def __str__(self) -> str:
        names = ", ".join(self) or "none"
        prefixes = sorted({trust.groups.prefix for trust in self.trusts if trust.groups.prefix is not None})
        more = f", or any name starting with {' or '.join(repr(p) for p in prefixes)}" if prefixes else ""
        return f"the upstreams' group mappings produce: {names}{more}"
