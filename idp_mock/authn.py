"""Checking who someone is: password, then TOTP when required, with throttling against guessing.

Pure of HTTP: the login pages call these with form values and turn the outcomes into pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import pyotp

from .directory import Directory, Employee
from .passwords import verify_password


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
class Result:
    outcome: Outcome
    employee: Employee | None = None


class Authenticator:
    def __init__(self, directory: Directory, store, throttle: Throttle):
        self.directory, self.store, self.throttle = directory, store, throttle

    def _throttled(self, username: str, address: str) -> bool:
        user = self.store.get("login_failures_user", username) or {"count": 0}
        addr = self.store.get("login_failures_address", address) or {"count": 0}
        return (user["count"] >= self.throttle.max_failures_per_user
                or addr["count"] >= self.throttle.max_failures_per_address)

    def _failed(self, username: str, address: str) -> None:
        window = self.throttle.window_seconds
        self.store.incr("login_failures_user", username, window)
        self.store.incr("login_failures_address", address, window)

    def check_password(self, username: str, password: str, address: str) -> Result:
        username = username.strip().lower()[:128]
        if self._throttled(username, address):
            return Result(Outcome.THROTTLED)
        employee = self.directory.find(username)
        if not verify_password(employee.password_hash if employee else None, password):
            self._failed(username, address)
            return Result(Outcome.BAD_CREDENTIALS)
        if employee.disabled:
            return Result(Outcome.DISABLED)
        if employee.mfa_required:
            return Result(Outcome.NEEDS_TOTP, employee)
        return Result(Outcome.OK, employee)

    def check_totp(self, employee: Employee, code: str, address: str) -> Result:
        if self._throttled(employee.username, address):
            return Result(Outcome.THROTTLED)
        code = code.strip().replace(" ", "")
        valid = (code.isdigit() and len(code) == 6
                 and pyotp.TOTP(employee.totp_secret).verify(code, valid_window=1)
                 # a code is good once: a shoulder-surfed or replayed code is refused
                 and self.store.add("totp_used", f"{employee.username}:{code}", {}, 120))
        if not valid:
            self._failed(employee.username, address)
            return Result(Outcome.BAD_CREDENTIALS)
        return Result(Outcome.OK, employee)
