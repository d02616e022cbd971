"""Checking who someone is: password, then TOTP when required, with throttling against guessing.

Pure of HTTP: the login pages call these with form values and turn the outcomes into pages.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import pyotp

from idp_mock.directory import DirectoryView, Employee
from idp_mock.passwords import verify_password

TOTP_STEP_SECONDS = 30  # RFC 6238's default, what authenticator apps use


class Outcome(Enum):
    OK = "ok"
    NEEDS_TOTP = "needs_totp"
    BAD_CREDENTIALS = "bad_credentials"
    DISABLED = "disabled"
    THROTTLED = "throttled"


@dataclass(frozen=True)
class Throttle:
    """Failed attempts allowed before a pause, each counted over a fixed window (config/idp.yaml
    `login_throttle`). Guessing one person's password from one place meets the first limit; the slower
    per-person limit stops guessing spread over many addresses, but only for browsers and addresses that
    person has never signed in from, so nobody elsewhere can keep them out; the per-address limit stops one
    address trying many people."""

    max_failures_per_user_and_address: int = 5
    window_seconds: int = 300
    max_failures_per_user: int = 20  # from browsers and addresses the person has not signed in from
    user_window_seconds: int = 900
    max_failures_per_address: int = 50
    trusted_seconds: int = 90 * 24 * 3600  # how long a browser or address stays known after a sign-in


REMEMBER_AGAIN_AFTER = 0.1  # of trusted_seconds: a known browser or address is written again after that long


@dataclass(frozen=True)
class TotpPolicy:
    """How far from the current 30-second step a code may be (for clock drift between the IdP and the
    person's authenticator), like Keycloak's OTP "look around window": codes of steps now-N .. now+N
    are accepted, each step once."""

    look_around_steps: int = 1

    @property
    def used_step_memory(self) -> int:
        """Seconds a used step is remembered: longer than any code of it is accepted ((2N + 1) steps), so
        a replay is refused for as long as the code would otherwise work."""
        return (2 * self.look_around_steps + 2) * TOTP_STEP_SECONDS


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    employee: Employee | None = None
    retry_after: int = 0  # THROTTLED: seconds until an attempt is counted again
    fresh: frozenset[str] = frozenset()  # "device", "address": known, and remembered recently (see trust)


@dataclass(frozen=True)
class Attempt:
    """Where a sign-in attempt comes from: the client's address, and the browser's device token (the
    `idp_device` cookie, set at each successful sign-in), if it sent one."""

    address: str
    device: str | None = None


@dataclass(frozen=True)
class _Counter:
    kind: str
    key: str
    limit: int
    window: int


class Authenticator:
    """Each attempt first takes a slot in its counters, atomically, and only then costs a hash; a success
    gives its slots back. So concurrent guesses cannot slip past a limit between a check and a count, and
    only failures (and attempts in flight) add up.

    Counters (fixed windows, so the page can say when the next one starts): a browser the person signed in
    with before (valid device token) is counted alone, per (person, device). Any other attempt is counted
    per (person, address), per address, and, unless the address is one the person signed in from before,
    per person over the longer user window."""

    def __init__(
        self,
        directory: DirectoryView,
        store,
        throttle: Throttle,
        totp: TotpPolicy = TotpPolicy(),
        clock: Callable[[], float] = time.time,
    ):
        self.directory, self.store, self.throttle, self.totp, self.clock = directory, store, throttle, totp, clock

    # --- who is known where -------------------------------------------------------------------

    def _remembered(self, kind: str, key: str, fresh: set[str], name: str) -> bool:
        """Known (a record of a sign-in); `name` goes into `fresh` when that record is recent enough that
        `trust` need not write it again."""
        record = self.store.get(kind, key)
        if record is None:
            return False
        if record.get("at", 0) > self.clock() - self.throttle.trusted_seconds * REMEMBER_AGAIN_AFTER:
            fresh.add(name)
        return True

    def _trusted_device(self, username: str, device: str | None, fresh: set[str]) -> bool:
        return bool(device) and self._remembered("login_device", f"{device}\x00{username}", fresh, "device")

    def _known_address(self, username: str, address: str, fresh: set[str]) -> bool:
        return self._remembered("login_address", f"{username}\x00{address}", fresh, "address")

    def trust(self, username: str, attempt: Attempt, fresh: frozenset[str] = frozenset()) -> str:
        """After a sign-in: remember the browser and the address for this person. Returns the device token
        for the browser's cookie (its own, or a new one). What the attempt found remembered recently
        (`Result.fresh`: within REMEMBER_AGAIN_AFTER of trusted_seconds) is not written again: it stays known
        for most of trusted_seconds after its last write, and a sign-in from a known place writes less."""
        own = bool(attempt.device) and len(attempt.device or "") <= 64
        device = attempt.device if own and attempt.device else secrets.token_urlsafe(24)
        ttl, record = self.throttle.trusted_seconds, {"at": int(self.clock())}
        if not (own and "device" in fresh):
            self.store.put("login_device", f"{device}\x00{username}", record, ttl)
        if "address" not in fresh:
            self.store.put("login_address", f"{username}\x00{attempt.address}", record, ttl)
        return device

    # --- counting -------------------------------------------------------------------------------

    def _counters(self, username: str, attempt: Attempt, fresh: set[str]) -> list[_Counter]:
        t = self.throttle
        if self._trusted_device(username, attempt.device, fresh):
            return [
                _Counter(
                    "login_failures_device",
                    f"{username}\x00{attempt.device}",
                    t.max_failures_per_user_and_address,
                    t.window_seconds,
                )
            ]
        counters = [
            _Counter(
                "login_failures_user_address",
                f"{username}\x00{attempt.address}",
                t.max_failures_per_user_and_address,
                t.window_seconds,
            ),
            _Counter("login_failures_address", attempt.address, t.max_failures_per_address, t.window_seconds),
        ]
        if not self._known_address(username, attempt.address, fresh):
            counters.append(_Counter("login_failures_user", username, t.max_failures_per_user, t.user_window_seconds))
        return counters

    def _slot(self, counter: _Counter, now: float) -> tuple[str, float]:
        """The counter's key in the current fixed window, and when that window ends."""
        window = int(now // counter.window)
        return f"{counter.key}\x00{window}", (window + 1) * counter.window

    def _admit(self, username: str, attempt: Attempt, fresh: set[str]) -> tuple[list[_Counter], int]:
        """Take a slot in each counter in turn; ([counters], 0) when all are within their limits. At the
        first full one, give back every slot taken (a refused attempt costs no hash, so it must not use
        up a slot a later attempt could have had) and return the seconds until that window ends."""
        now = self.clock()
        counters = self._counters(username, attempt, fresh)
        for taken, counter in enumerate(counters, start=1):
            key, ends = self._slot(counter, now)
            if self.store.incr(counter.kind, key, counter.window) > counter.limit:
                self._release(counters[:taken], now)
                return counters, int(ends - now) + 1
        return counters, 0

    def _release(self, counters: list[_Counter], now: float | None = None) -> None:
        now = self.clock() if now is None else now
        for counter in counters:
            self.store.incr(counter.kind, self._slot(counter, now)[0], counter.window, amount=-1)

    # --- the checks -------------------------------------------------------------------------------

    def check_password(self, username: str, password: str, attempt: Attempt) -> Result:
        username = username.strip().lower()[:128]
        fresh: set[str] = set()
        counters, wait = self._admit(username, attempt, fresh)
        if wait:
            return Result(Outcome.THROTTLED, retry_after=wait)
        employee = self.directory.find(username)
        if not verify_password(employee.password_hash if employee else None, password) or employee is None:
            return Result(Outcome.BAD_CREDENTIALS)
        self._release(counters)
        if employee.disabled:
            return Result(Outcome.DISABLED)
        if employee.mfa_required:
            return Result(Outcome.NEEDS_TOTP, employee)
        return Result(Outcome.OK, employee, fresh=frozenset(fresh))

    def check_totp(self, employee: Employee, code: str, attempt: Attempt) -> Result:
        counters, wait = self._admit(employee.username, attempt, set())
        if wait:
            return Result(Outcome.THROTTLED, retry_after=wait)
        step = None
        if employee.totp_secret:
            code = code.strip().replace(" ", "")
            step = _matching_time_step(employee.totp_secret, code, self.totp.look_around_steps, self.clock())
        # A time step is good once: a shoulder-surfed or replayed code is refused, whatever its spelling.
        memory = self.totp.used_step_memory
        if step is None or not self.store.add("totp_used", f"{employee.username}:{step}", {}, memory):
            return Result(Outcome.BAD_CREDENTIALS)
        self._release(counters)
        return Result(Outcome.OK, employee)


def _matching_time_step(secret: str, code: str, look_around: int, now: float) -> int | None:
    """The 30-second step whose code this is: the current one or up to `look_around` steps before or
    after it (clock drift), the earliest first.

    Only ASCII digits count: str.isdigit() also accepts other scripts' digits, which pyotp would
    normalise, so a used code could come back in another spelling."""
    if not (len(code) == 6 and code.isascii() and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret, interval=TOTP_STEP_SECONDS)
    for offset in range(-look_around, look_around + 1):
        moment = now + offset * totp.interval
        if hmac.compare_digest(totp.at(moment), code):
            return int(moment // totp.interval)
    return None
