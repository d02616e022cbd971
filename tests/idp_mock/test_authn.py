"""The authentication core without HTTP: throttling that concurrency cannot slip past, TOTP replay."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyotp
import pytest

from idp_mock.authn import Authenticator, Outcome, Throttle
from idp_mock.directory import load_directory
from sso_common.store.sqlite import SQLiteStateStore
from tests.support.idp_client import DEMO_PASSWORD, ERIN_TOTP_SECRET

DIRECTORY = load_directory(Path(__file__).resolve().parents[2] / "config" / "directory.yaml")


@pytest.fixture
def authenticator(tmp_path):
    return Authenticator(DIRECTORY, SQLiteStateStore(str(tmp_path / "state.db")), Throttle(5, 1000, 300))


def test_concurrent_guesses_cannot_exceed_the_limit(authenticator):
    outcomes = []

    def guess():
        outcomes.append(authenticator.check_password("dave", "wrong-password", "10.0.0.1").outcome)

    threads = [threading.Thread(target=guess) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(Outcome.BAD_CREDENTIALS) == 5
    assert outcomes.count(Outcome.THROTTLED) == 35


def test_successes_do_not_count_towards_the_limit(authenticator):
    for _ in range(20):
        assert authenticator.check_password("bob", DEMO_PASSWORD, "10.0.0.2").outcome is Outcome.OK


def test_the_address_limit_holds_across_users(tmp_path):
    authenticator = Authenticator(DIRECTORY, SQLiteStateStore(str(tmp_path / "s.db")), Throttle(100, 3, 300))
    for name in ("a1", "a2", "a3"):
        assert authenticator.check_password(name, "x", "10.0.0.3").outcome is Outcome.BAD_CREDENTIALS
    assert authenticator.check_password("bob", DEMO_PASSWORD, "10.0.0.3").outcome is Outcome.THROTTLED
    assert authenticator.check_password("bob", DEMO_PASSWORD, "10.0.0.4").outcome is Outcome.OK


@pytest.mark.parametrize(
    "respell",
    [
        lambda code: code.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"}),  # fullwidth digits
        lambda code: code.translate({ord(d): 0x1D7CE + int(d) for d in "0123456789"}),  # mathematical bold
        lambda code: code[:-1] + chr(0x0660 + int(code[-1])),  # Arabic-Indic last digit
        lambda code: f" {code[:3]} {code[3:]} ",
    ],
)
def test_a_used_code_is_refused_in_any_spelling(authenticator, respell):
    erin = DIRECTORY.find("erin")
    code = pyotp.TOTP(ERIN_TOTP_SECRET).now()
    assert authenticator.check_totp(erin, code, "10.0.0.5").outcome is Outcome.OK
    assert authenticator.check_totp(erin, respell(code), "10.0.0.5").outcome is Outcome.BAD_CREDENTIALS


def test_next_window_code_is_accepted_once_for_clock_drift(authenticator):
    erin = DIRECTORY.find("erin")
    upcoming = pyotp.TOTP(ERIN_TOTP_SECRET).at(time.time() + 30)
    assert authenticator.check_totp(erin, upcoming, "10.0.0.6").outcome is Outcome.OK
    assert authenticator.check_totp(erin, upcoming, "10.0.0.6").outcome is Outcome.BAD_CREDENTIALS


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12345x"])
def test_malformed_codes_are_refused(authenticator, code):
    assert authenticator.check_totp(DIRECTORY.find("erin"), code, "10.0.0.7").outcome is Outcome.BAD_CREDENTIALS
