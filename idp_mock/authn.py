"""Checking who someone is: password, then TOTP when required, with throttling against guessing.

Pure of HTTP: the login pages call these with form values and turn the outcomes into pages.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import pyotp

from idp_mock.directory import Directory, Employee
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
    max_failures_per_user: int
    max_failures_per_address: int
    window_seconds: int


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


class Authenticator:
    """Each attempt first takes a slot in the per-user and per-address counters, atomically, and only
    then costs a hash; a success gives its slots back. So concurrent guesses cannot slip past the
    limit between a check and a count, and only failures (and attempts in flight) add up."""

    def __init__(
        self,
        directory: Directory,
        store,
        throttle: Throttle,
        totp: TotpPolicy = TotpPolicy(),
        clock: Callable[[], float] = time.time,
    ):
        self.directory, self.store, self.throttle, self.totp, self.clock = directory, store, throttle, totp, clock

    def _counters(self, username: str, address: str):
        return (
            ("login_failures_user", username, self.throttle.max_failures_per_user),
            ("login_failures_address", address, self.throttle.max_failures_per_address),
        )

    def _admit(self, username: str, address: str) -> bool:
        window = self.throttle.window_seconds
        counts = [(self.store.incr(kind, key, window), limit) for kind, key, limit in self._counters(username, address)]
        return all(count <= limit for count, limit in counts)

    def _release(self, username: str, address: str) -> None:
        for kind, key, _ in self._counters(username, address):
            self.store.incr(kind, key, self.throttle.window_seconds, amount=-1)

    def check_password(self, username: str, password: str, address: str) -> Result:
        username = username.strip().lower()[:128]
        if not self._admit(username, address):
            return Result(Outcome.THROTTLED)
        employee = self.directory.find(username)
        if not verify_password(employee.password_hash if employee else None, password) or employee is None:
            return Result(Outcome.BAD_CREDENTIALS)
        self._release(username, address)
        if employee.disabled:
            return Result(Outcome.DISABLED)
        if employee.mfa_required:
            return Result(Outcome.NEEDS_TOTP, employee)
        return Result(Outcome.OK, employee)

    def check_totp(self, employee: Employee, code: str, address: str) -> Result:
        if not self._admit(employee.username, address):
            return Result(Outcome.THROTTLED)
        step = None
        if employee.totp_secret:
            code = code.strip().replace(" ", "")
            step = _matching_time_step(employee.totp_secret, code, self.totp.look_around_steps, self.clock())
        # A time step is good once: a shoulder-surfed or replayed code is refused, whatever its spelling.
        memory = self.totp.used_step_memory
        if step is None or not self.store.add("totp_used", f"{employee.username}:{step}", {}, memory):
            return Result(Outcome.BAD_CREDENTIALS)
        self._release(employee.username, address)
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
