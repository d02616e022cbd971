"""The authentication core without HTTP: throttling that concurrency cannot slip past, TOTP replay and
the TOTP look-around window (config/idp.yaml totp.look_around_steps)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyotp
import pytest

from idp_mock.authn import Attempt, Authenticator, Outcome, Throttle, TotpPolicy
from idp_mock.directory import load_directory
from idp_mock.settings import load_settings
from sso_common.config import ConfigError
from sso_common.store.memory import MemoryStateStore
from sso_common.store.sqlite import SQLiteStateStore
from tests.support.idp_client import DEMO_PASSWORD, ERIN_TOTP_SECRET

CONFIG = Path(__file__).resolve().parents[2] / "config"
DIRECTORY = load_directory(CONFIG / "directory.yaml")
STEP = 30


@pytest.fixture
def authenticator(tmp_path):
    return Authenticator(
        DIRECTORY,
        SQLiteStateStore(str(tmp_path / "state.db")),
        Throttle(max_failures_per_user_and_address=5, max_failures_per_address=1000),
    )


def test_concurrent_guesses_cannot_exceed_the_limit(authenticator):
    outcomes = []

    def guess():
        outcomes.append(authenticator.check_password("dave", "wrong-password", Attempt("10.0.0.1")).outcome)

    threads = [threading.Thread(target=guess) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(Outcome.BAD_CREDENTIALS) == 5
    assert outcomes.count(Outcome.THROTTLED) == 35


def test_successes_do_not_count_towards_the_limit(authenticator):
    for _ in range(20):
        assert authenticator.check_password("bob", DEMO_PASSWORD, Attempt("10.0.0.2")).outcome is Outcome.OK


def test_the_address_limit_holds_across_users(tmp_path):
    authenticator = Authenticator(
        DIRECTORY,
        SQLiteStateStore(str(tmp_path / "s.db")),
        Throttle(max_failures_per_user_and_address=100, max_failures_per_address=3),
    )
    for name in ("a1", "a2", "a3"):
        assert authenticator.check_password(name, "x", Attempt("10.0.0.3")).outcome is Outcome.BAD_CREDENTIALS
    assert authenticator.check_password("bob", DEMO_PASSWORD, Attempt("10.0.0.3")).outcome is Outcome.THROTTLED
    assert authenticator.check_password("bob", DEMO_PASSWORD, Attempt("10.0.0.4")).outcome is Outcome.OK


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
    assert authenticator.check_totp(erin, code, Attempt("10.0.0.5")).outcome is Outcome.OK
    assert authenticator.check_totp(erin, respell(code), Attempt("10.0.0.5")).outcome is Outcome.BAD_CREDENTIALS


def test_next_window_code_is_accepted_once_for_clock_drift(authenticator):
    erin = DIRECTORY.find("erin")
    upcoming = pyotp.TOTP(ERIN_TOTP_SECRET).at(time.time() + 30)
    assert authenticator.check_totp(erin, upcoming, Attempt("10.0.0.6")).outcome is Outcome.OK
    assert authenticator.check_totp(erin, upcoming, Attempt("10.0.0.6")).outcome is Outcome.BAD_CREDENTIALS


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12345x"])
def test_malformed_codes_are_refused(authenticator, code):
    assert (
        authenticator.check_totp(DIRECTORY.find("erin"), code, Attempt("10.0.0.7")).outcome is Outcome.BAD_CREDENTIALS
    )


# --- the look-around window, on a clock of the test's own ---------------------------------------


class FakeClock:
    now = 1_800_000_000 + STEP / 2  # the middle of a 30-second step

    def __call__(self) -> float:
        return self.now


def erin_code(clock: FakeClock, steps_from_now: int) -> str:
    return pyotp.TOTP(ERIN_TOTP_SECRET).at(clock() + steps_from_now * STEP)


def authenticator_on(clock: FakeClock, look_around: int) -> Authenticator:
    return Authenticator(
        DIRECTORY,
        MemoryStateStore(clock),
        Throttle(max_failures_per_user_and_address=100, max_failures_per_address=1000),
        TotpPolicy(look_around),
        clock,
    )


@pytest.fixture
def clock():
    return FakeClock()


@pytest.mark.parametrize("look_around", [0, 1, 3, 10])
def test_a_code_from_n_steps_away_is_accepted_only_within_the_look_around_window(clock, look_around):
    erin = DIRECTORY.find("erin")
    for steps in range(-look_around - 2, look_around + 3):
        answer = authenticator_on(clock, look_around).check_totp(erin, erin_code(clock, steps), Attempt("10.0.0.8"))
        expected = Outcome.OK if abs(steps) <= look_around else Outcome.BAD_CREDENTIALS
        assert answer.outcome is expected, f"a code {steps} steps away, window {look_around}"


@pytest.mark.parametrize("look_around", [1, 3, 10])
def test_a_used_step_is_refused_for_as_long_as_its_code_would_be_accepted(clock, look_around):
    """The code of the last step of the window stays acceptable until the window has moved 2N steps on:
    the replay protection must remember it at least that long, whatever the window."""
    erin, authenticator = DIRECTORY.find("erin"), authenticator_on(clock, look_around)
    code = erin_code(clock, look_around)
    assert authenticator.check_totp(erin, code, Attempt("10.0.0.9")).outcome is Outcome.OK
    for _ in range(2 * look_around):
        clock.now += STEP
        assert authenticator.check_totp(erin, code, Attempt("10.0.0.9")).outcome is Outcome.BAD_CREDENTIALS
        # ... refused as a replay: the same code is still good for someone who has not used it
        assert authenticator_on(clock, look_around).check_totp(erin, code, Attempt("10.0.0.9")).outcome is Outcome.OK


def test_the_look_around_window_defaults_to_one_step(monkeypatch):
    monkeypatch.delenv("IDP_TOTP_LOOK_AROUND_STEPS", raising=False)
    assert load_settings(CONFIG / "idp.yaml").totp == TotpPolicy(look_around_steps=1)
    monkeypatch.setenv("IDP_TOTP_LOOK_AROUND_STEPS", "4")
    assert load_settings(CONFIG / "idp.yaml").totp == TotpPolicy(look_around_steps=4)


@pytest.mark.parametrize("value", ["-1", "11", "two", "1.5"])
def test_a_bad_look_around_window_is_named(monkeypatch, value):
    monkeypatch.setenv("IDP_TOTP_LOOK_AROUND_STEPS", value)
    with pytest.raises(ConfigError) as caught:
        load_settings(CONFIG / "idp.yaml")
    assert caught.value.source == str(CONFIG / "idp.yaml") and caught.value.key == "totp.look_around_steps"


def test_an_unknown_totp_key_is_named(tmp_path):
    text = (CONFIG / "idp.yaml").read_text()
    assert "  look_around_steps:" in text
    (tmp_path / "idp.yaml").write_text(text.replace("  look_around_steps:", "  look_around:"))
    (tmp_path / "directory.yaml").write_text((CONFIG / "directory.yaml").read_text())
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "idp.yaml")
    assert caught.value.key == "totp.look_around" and "allowed: look_around_steps" in caught.value.problem


# --- throttling: per (person, address), slower per person, never a lock-out by others ---------------


def strict(clock: FakeClock) -> Authenticator:
    throttle = Throttle(
        max_failures_per_user_and_address=5,
        window_seconds=300,
        max_failures_per_user=20,
        user_window_seconds=900,
        max_failures_per_address=1000,
    )
    return Authenticator(DIRECTORY, MemoryStateStore(clock), throttle, clock=clock)


def test_one_address_guessing_one_person_is_paused_and_told_until_when(clock):
    authenticator = strict(clock)
    for _ in range(5):
        assert authenticator.check_password("bob", "wrong", Attempt("10.1.0.1")).outcome is Outcome.BAD_CREDENTIALS
    refused = authenticator.check_password("bob", DEMO_PASSWORD, Attempt("10.1.0.1"))
    window_end = (clock.now // 300 + 1) * 300
    assert refused.outcome is Outcome.THROTTLED and refused.retry_after == int(window_end - clock.now) + 1
    assert authenticator.check_password("bob", DEMO_PASSWORD, Attempt("10.1.0.2")).outcome is Outcome.OK
    clock.now = window_end + 1  # the next window: the pause is over
    assert authenticator.check_password("bob", DEMO_PASSWORD, Attempt("10.1.0.1")).outcome is Outcome.OK


def test_guessing_from_many_addresses_cannot_keep_the_person_out(clock):
    authenticator = strict(clock)
    bob = authenticator.check_password("bob", DEMO_PASSWORD, Attempt("10.2.0.1"))  # bob's usual place
    device = authenticator.trust("bob", Attempt("10.2.0.1"))
    assert bob.outcome is Outcome.OK
    for number in range(40):  # 40 addresses, 1 guess each: within the per-address limit, over the per-person one
        authenticator.check_password("bob", "wrong", Attempt(f"192.0.2.{number}"))
    stranger = authenticator.check_password("bob", DEMO_PASSWORD, Attempt("198.51.100.7"))
    assert stranger.outcome is Outcome.THROTTLED and 0 < stranger.retry_after <= 900
    # bob's own address and his own browser (anywhere) are not held back by the strangers' guesses
    assert authenticator.check_password("bob", DEMO_PASSWORD, Attempt("10.2.0.1")).outcome is Outcome.OK
    travelling = authenticator.check_password("bob", DEMO_PASSWORD, Attempt("203.0.113.9", device))
    assert travelling.outcome is Outcome.OK
    # ... and a device token of bob's counts for nobody else
    for _ in range(20):
        authenticator.check_password("carol", "wrong", Attempt(f"192.0.2.{_ + 100}"))
    assert authenticator.check_password("carol", DEMO_PASSWORD, Attempt("203.0.113.9", device)).outcome is (
        Outcome.THROTTLED
    )


def test_a_known_browser_is_still_limited_per_browser(clock):
    authenticator = strict(clock)
    assert authenticator.check_password("bob", DEMO_PASSWORD, Attempt("10.3.0.1")).outcome is Outcome.OK
    device = authenticator.trust("bob", Attempt("10.3.0.1"))
    for _ in range(5):
        authenticator.check_password("bob", "wrong", Attempt("10.3.0.2", device))
    assert authenticator.check_password("bob", DEMO_PASSWORD, Attempt("10.3.0.2", device)).outcome is Outcome.THROTTLED


def test_a_sign_in_from_a_recently_remembered_place_writes_it_again_only_after_a_tenth_of_the_trust(clock):
    """Known browser and address are not rewritten on every sign-in (fewer store writes), yet stay known as
    long as the person keeps signing in: written again once a tenth of trusted_seconds has passed."""
    authenticator = strict(clock)
    writes: list[str] = []
    put = authenticator.store.put
    authenticator.store.put = lambda kind, *args: (writes.append(kind), put(kind, *args))[1]
    first = authenticator.check_password("bob", DEMO_PASSWORD, Attempt("10.4.0.1"))
    device = authenticator.trust("bob", Attempt("10.4.0.1"), first.fresh)
    assert first.fresh == frozenset() and writes == ["login_device", "login_address"]
    writes.clear()
    again = authenticator.check_password("bob", DEMO_PASSWORD, Attempt("10.4.0.1", device))
    assert again.fresh == {"device"}  # a trusted browser: the address is not even looked up
    authenticator.trust("bob", Attempt("10.4.0.1", device), again.fresh)
    assert writes == ["login_address"]
    writes.clear()
    no_cookie = authenticator.check_password("bob", DEMO_PASSWORD, Attempt("10.4.0.1"))
    assert no_cookie.fresh == {"address"}
    assert authenticator.trust("bob", Attempt("10.4.0.1"), no_cookie.fresh) != device and writes == ["login_device"]
    writes.clear()
    clock.now += authenticator.throttle.trusted_seconds * 0.1 + 1  # a tenth later: written again, known for longer
    later = authenticator.check_password("bob", DEMO_PASSWORD, Attempt("10.4.0.1", device))
    assert later.outcome is Outcome.OK and later.fresh == frozenset()
    authenticator.trust("bob", Attempt("10.4.0.1", device), later.fresh)
    assert writes == ["login_device", "login_address"]
    clock.now += authenticator.throttle.trusted_seconds * 0.95  # after the first write's end, within the last's
    assert authenticator.store.get("login_device", f"{device}\x00bob") is not None
    assert authenticator.store.get("login_address", "bob\x0010.4.0.1") is not None
