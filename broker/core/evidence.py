"""What the validating code saw and decided, recorded by that code as it runs: the raw material of the
"How did I get here?" explanation (broker.core.explain).

The rule is that nothing is validated twice. The connectors (joserfc's `JWTClaimsRegistry`, python3-saml's
`is_valid`, their own checks), the trust boundary, the entitlement rules and the STS exchange each write
what they are about to check (`plan`), then the outcome they actually reached (`passed`, `failed`,
`skipped`, or `run` around the call that checks). A library stops at its first failure, so whatever was
planned and never marked stays "not reached". Nothing here decides anything.

A `Recorder` is active only inside `recording()` (a context variable: per request, per thread); outside
one, `recorder()` is a disabled recorder whose methods do nothing, so the validating code records
unconditionally and pays nothing when nobody listens.

What goes in must never be a secret: a password, a one-time code, an authorization code, a token, an
assertion's signature value, a secret key or a session token. Code that records such a value records its
`fingerprint` instead (a short SHA-256, and the last 4 characters of long values).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sso_common.records import Record

PASSED, FAILED, NOT_REACHED, SKIPPED = "passed", "failed", "not reached", "skipped"
OUTCOMES = (PASSED, FAILED, NOT_REACHED, SKIPPED)
BROKER = "the broker"  # checks of the broker's own code (as opposed to a library's)
MAX_TEXT = 4000  # one fact or check value
MAX_DOCUMENT = 200_000  # one document (a pretty-printed SAML response, a policy)


@dataclass(frozen=True)
class Check(Record):
    """One check: what was compared, by whom, and the outcome it reached."""

    name: str
    outcome: str  # one of OUTCOMES
    by: str  # which library or which part of the broker made it
    expected: str = ""
    received: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Fact(Record):
    label: str
    value: str
    source: str = ""  # where the value came from (a claim, an attribute, a rule)


@dataclass(frozen=True)
class Document(Record):
    """A document as received or sent, decoded and pretty-printed, secrets withheld."""

    label: str
    media_type: str  # application/json or application/xml
    text: str
    note: str = ""


@dataclass(frozen=True)
class Section(Record):
    key: str
    title: str
    summary: str = ""
    facts: tuple[Fact, ...] = ()
    documents: tuple[Document, ...] = ()
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True)
class GroupFate(Record):
    """What the upstream's group mapping did with one of its groups."""

    upstream_group: str
    broker_group: str | None  # None: dropped
    rule: str  # "keep", "map", "prefix", or "no rule: dropped"


@dataclass(frozen=True)
class AssignmentMatch(Record):
    """One assignment of access.yaml, as `entitlements_for` evaluated it for the person."""

    group: str
    account_id: str
    permission_set: str
    matched: bool


@dataclass(frozen=True)
class EntitlementCheck(Record):
    """The outcome `check_entitlement` reached for one (account, permission set)."""

    account_id: str
    permission_set: str
    outcome: str  # "granted", "MfaRequired", "NotEntitled"
    reason: str = ""


def fingerprint(secret: str | bytes) -> str:
    """What the explanation shows of a secret: 12 hex digits of its SHA-256, and its last 4 characters
    when it is long enough that they give nothing away."""
    raw = secret.encode() if isinstance(secret, str) else secret
    digest = hashlib.sha256(raw).hexdigest()[:12]
    if isinstance(secret, str) and len(secret) >= 24:
        return f"sha256:{digest}… (…{secret[-4:]}, {len(secret)} characters)"
    return f"sha256:{digest}… ({len(raw)} {'characters' if isinstance(secret, str) else 'bytes'})"


def _clip(text: Any, limit: int = MAX_TEXT) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more characters)"


def failure_reason(error: BaseException) -> str:
    """What a check's failure says: the reason the broker shows for it (safe to show by construction)."""
    for name in ("reason", "message", "description"):
        value = getattr(error, name, None)
        if isinstance(value, str) and value:
            return _clip(value, 600)
    return type(error).__name__


class SectionRecorder:
    """One section of the story: planned checks and their outcomes, facts and documents."""

    def __init__(self, key: str, title: str, enabled: bool = True):
        self.key, self.title, self.enabled = key, title, enabled
        self.summary = ""
        self._planned: list[tuple[str, str, str]] = []  # (name, by, expected), in the order the code runs
        self._outcomes: dict[str, Check] = {}
        self._facts: list[Fact] = []
        self._documents: list[Document] = []

    def plan(self, *checks: tuple[str, str] | tuple[str, str, str]) -> SectionRecorder:
        """The checks about to run, in order: (name, by[, expected]). Starts the checks afresh (a retry)."""
        if self.enabled:
            self._planned = [(c[0], c[1], c[2] if len(c) > 2 else "") for c in checks]
            self._outcomes = {}
        return self

    def _mark(self, name: str, outcome: str, received: Any = "", detail: Any = "", expected: Any = None) -> None:
        if not self.enabled:
            return
        planned = next((p for p in self._planned if p[0] == name), None)
        if planned is None:
            planned = (name, BROKER, "")
            self._planned.append(planned)
        self._outcomes[name] = Check(
            name=name,
            outcome=outcome,
            by=planned[1],
            expected=_clip(planned[2] if expected is None else expected),
            received=_clip(received),
            detail=_clip(detail, 1000),
        )

    def passed(self, name: str, received: Any = "", detail: Any = "", expected: Any = None) -> None:
        self._mark(name, PASSED, received, detail, expected)

    def failed(self, name: str, detail: Any, received: Any = "", expected: Any = None) -> None:
        self._mark(name, FAILED, received, detail, expected)

    def skipped(self, name: str, detail: Any, received: Any = "") -> None:
        self._mark(name, SKIPPED, received, detail)

    def outcome(self, name: str) -> str | None:
        check = self._outcomes.get(name)
        return check.outcome if check else None

    @contextmanager
    def run(self, name: str, received: Any = "", expected: Any = None) -> Iterator[None]:
        """Around the code that makes check `name`: passed when it returns, failed (with the reason the
        exception gives) when it raises; the exception goes on unchanged."""
        try:
            yield
        except BaseException as error:
            if self.outcome(name) is None:
                self.failed(name, failure_reason(error), received, expected)
            raise
        if self.outcome(name) is None:
            self.passed(name, received, expected=expected)

    def fact(self, label: str, value: Any, source: str = "") -> None:
        if self.enabled:
            self._facts = [f for f in self._facts if f.label != label] + [Fact(label, _clip(value), source)]

    def document(self, label: str, media_type: str, text: str, note: str = "") -> None:
        if self.enabled:
            self._documents = [d for d in self._documents if d.label != label]
            self._documents.append(Document(label, media_type, _clip(text, MAX_DOCUMENT), note))

    def build(self) -> Section:
        checks = tuple(
            self._outcomes.get(name) or Check(name=name, outcome=NOT_REACHED, by=by, expected=_clip(expected))
            for name, by, expected in self._planned
        )
        return Section(self.key, self.title, self.summary, tuple(self._facts), tuple(self._documents), checks)


class Recorder:
    """Everything recorded during one request: sections in the order they were opened, the group mapping,
    the assignments evaluated and the entitlement checks made, and a few loose values (`notes`)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._sections: dict[str, SectionRecorder] = {}
        self.groups: list[GroupFate] = []
        self.assignments: dict[tuple[str, str, str], AssignmentMatch] = {}
        self.entitlement_checks: dict[tuple[str, str], EntitlementCheck] = {}
        self.notes: dict[str, Any] = {}

    def section(self, key: str, title: str = "") -> SectionRecorder:
        if not self.enabled:
            return _DISABLED_SECTION
        if key not in self._sections:
            self._sections[key] = SectionRecorder(key, title or key)
        elif title:
            self._sections[key].title = title
        return self._sections[key]

    def has(self, key: str) -> bool:
        return key in self._sections

    def sections(self, *keys: str) -> tuple[Section, ...]:
        """The sections recorded, built; only `keys` (in that order) when given."""
        chosen = keys or tuple(self._sections)
        return tuple(self._sections[key].build() for key in chosen if key in self._sections)

    def group(self, upstream_group: str, broker_group: str | None, rule: str) -> None:
        if self.enabled:
            self.groups.append(GroupFate(upstream_group, broker_group, rule))

    def assignment(self, group: str, account_id: str, permission_set: str, matched: bool) -> None:
        if self.enabled:
            self.assignments[(group, account_id, permission_set)] = AssignmentMatch(
                group, account_id, permission_set, matched
            )

    def entitlement_check(self, account_id: str, permission_set: str, outcome: str, reason: str = "") -> None:
        if self.enabled:
            self.entitlement_checks[(account_id, permission_set)] = EntitlementCheck(
                account_id, permission_set, outcome, reason
            )

    def note(self, name: str, value: Any) -> None:
        if self.enabled:
            self.notes[name] = value


_DISABLED_SECTION = SectionRecorder("", "", enabled=False)
_DISABLED = Recorder(enabled=False)
_ACTIVE: ContextVar[Recorder | None] = ContextVar("broker_evidence_recorder", default=None)


def recorder() -> Recorder:
    """The active recorder, or a disabled one that records nothing."""
    return _ACTIVE.get() or _DISABLED


@contextmanager
def recording(into: Recorder | None = None) -> Iterator[Recorder]:
    """Record what the code run inside says it checked (nested: the inner recorder wins until it ends)."""
    active = into or Recorder()
    token = _ACTIVE.set(active)
    try:
        yield active
    finally:
        _ACTIVE.reset(token)
