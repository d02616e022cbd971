"""The IdP's login pages, driven with plain HTTP against the real server."""

from __future__ import annotations

import time

import pyotp
import pytest
import requests

from tests.support.idp_client import (
    DEMO_PASSWORD,
    ERIN_TOTP_SECRET,
    TOTP_LOOK_AROUND_STEPS,
    form_fields,
    fresh_totp,
    submit_login,
)
from tests.support.servers import start_idp

GENERIC_ERROR = "The username or password is incorrect."


def login(idp, username, password=DEMO_PASSWORD, totp_secret=None, continue_to="/"):
    http = requests.Session()
    page = http.get(f"{idp.url}/login", params={"continue": continue_to})
    return http, submit_login(http, idp.url, page, username, password, totp_secret)


@pytest.mark.parametrize("username", ["alice", "bob", "carol", "dave"])
def test_seeded_users_sign_in_with_the_demo_password(idp, username):
    http, answer = login(idp, username, continue_to="/somewhere")
    assert answer.status_code == 303 and answer.headers["Location"] == "/somewhere"
    cookie = answer.headers["Set-Cookie"]
    assert "idp_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    home = http.get(f"{idp.url}/")
    assert f"{username}@example.com" in home.text and "You are signed in as" in home.text


def test_mfa_user_needs_a_valid_totp_code(idp):
    http, answer = login(idp, "erin", totp_secret=ERIN_TOTP_SECRET)
    assert answer.status_code == 303
    home = http.get(f"{idp.url}/").text
    assert "erin@example.com" in home and "password and verification code" in home


def test_mfa_wrong_code_is_refused(idp):
    http = requests.Session()
    first = http.post(
        f"{idp.url}/login",
        allow_redirects=False,
        data={**form_fields(http.get(f"{idp.url}/login").text), "username": "erin", "password": DEMO_PASSWORD},
    )
    assert first.headers["Location"] == "/login/mfa"
    page = http.get(f"{idp.url}/login/mfa")
    window = range(-TOTP_LOOK_AROUND_STEPS - 1, TOTP_LOOK_AROUND_STEPS + 2)  # the IdP's, and a step to spare
    valid = {pyotp.TOTP(ERIN_TOTP_SECRET).at(time.time() + 30 * steps) for steps in window}
    wrong = next(code for code in ("123456", "654321", "111111") if code not in valid)
    answer = http.post(f"{idp.url}/login/mfa", data={**form_fields(page.text), "totp": wrong}, allow_redirects=False)
    assert answer.status_code == 401 and "not valid" in answer.text
    assert "You are signed in" not in http.get(f"{idp.url}/").text


def test_a_totp_code_works_only_once(idp):
    """A code seen by a shoulder-surfer or a proxy cannot be used again, even within its window."""
    code = fresh_totp(idp.url)
    answers = []
    for _ in range(2):
        http = requests.Session()
        http.post(
            f"{idp.url}/login",
            data={**form_fields(http.get(f"{idp.url}/login").text), "username": "erin", "password": DEMO_PASSWORD},
        )
        page = http.get(f"{idp.url}/login/mfa")
        answers.append(
            http.post(
                f"{idp.url}/login/mfa", data={**form_fields(page.text), "totp": code}, allow_redirects=False
            ).status_code
        )
    assert answers == [303, 401]


def test_wrong_password_and_unknown_user_get_the_same_answer(idp):
    _, wrong = login(idp, "bob", password="not-the-password")
    _, unknown = login(idp, "nobody-here", password="not-the-password")
    assert wrong.status_code == unknown.status_code == 401
    assert GENERIC_ERROR in wrong.text and GENERIC_ERROR in unknown.text
    assert 'value="bob"' in wrong.text  # the form again, username kept


def test_disabled_user_is_refused(idp):
    http, answer = login(idp, "frank")
    assert answer.status_code == 403 and "disabled" in answer.text
    assert "idp_session" not in http.cookies


def test_single_sign_on_skips_the_form_until_forced(idp):
    http, _ = login(idp, "bob")
    again = http.get(f"{idp.url}/login", params={"continue": "/next"}, allow_redirects=False)
    assert again.status_code == 303 and again.headers["Location"] == "/next"
    forced = http.get(f"{idp.url}/login", params={"continue": "/next", "force": "1"}, allow_redirects=False)
    assert forced.status_code == 200 and 'name="password"' in forced.text


def test_logout_ends_the_session(idp):
    http, _ = login(idp, "carol")
    page = http.get(f"{idp.url}/")
    answer = http.post(f"{idp.url}/logout", data=form_fields(page.text), allow_redirects=False)
    assert answer.status_code == 303
    assert "You are signed out" in http.get(f"{idp.url}/?signed_out=1").text
    assert http.get(f"{idp.url}/login", params={"continue": "/x"}, allow_redirects=False).status_code == 200


def test_login_hint_prefills_the_username(idp):
    page = requests.get(f"{idp.url}/login", params={"login_hint": "alice"})
    assert 'value="alice"' in page.text


def test_login_page_is_accessible_and_hints_the_demo_users(idp):
    page = requests.get(f"{idp.url}/login").text
    assert "<title>Sign in - Example Corp</title>" in page and '<html lang="en">' in page
    for field in ("username", "password"):
        assert f'<label for="{field}">' in page and f'id="{field}"' in page
    assert "Welcome-2026" in page and 'autocomplete="current-password"' in page


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:x"])
def test_continue_must_stay_on_the_idp(idp, target):
    answer = requests.get(f"{idp.url}/login", params={"continue": target}, allow_redirects=False)
    assert answer.status_code == 400 and "not valid" in answer.text
    assert "Location" not in answer.headers


def test_form_without_csrf_token_is_refused(idp):
    answer = requests.post(
        f"{idp.url}/login", data={"username": "bob", "password": DEMO_PASSWORD}, allow_redirects=False
    )
    assert answer.status_code == 400 and "Form expired" in answer.text


def test_oversized_form_is_refused_cleanly(idp):
    answer = requests.post(f"{idp.url}/login", data={"username": "bob", "password": "x" * 400_000})
    assert answer.status_code == 413 and "too large" in answer.text


def test_expired_mfa_step_is_a_clear_error(idp):
    answer = requests.get(f"{idp.url}/login/mfa")
    assert answer.status_code == 400 and "expired" in answer.text


def test_security_headers(idp):
    headers = requests.get(f"{idp.url}/login").headers
    assert headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"


def test_no_password_in_the_logs(idp):
    login(idp, "bob")
    login(idp, "bob", password="Wrong-Password-123")
    logs = idp.logs()
    assert DEMO_PASSWORD not in logs and "Wrong-Password-123" not in logs


@pytest.fixture(scope="module")
def strict_idp(tmp_path_factory):
    """An IdP with low throttling limits, so the tests can reach them quickly."""
    service = start_idp(
        tmp_path_factory.mktemp("strict-idp"),
        env={"IDP_MAX_FAILURES_PER_USER_AND_ADDRESS": "3", "IDP_MAX_FAILURES_PER_ADDRESS": "12"},
    )
    yield service
    service.stop()


def test_repeated_failures_for_one_user_are_throttled_and_the_page_says_how_long(strict_idp):
    for _ in range(3):
        assert login(strict_idp, "alice", password="bad-password")[1].status_code == 401
    _, answer = login(strict_idp, "alice")  # even the right password, for a while
    assert answer.status_code == 429 and "Too many failed sign-in attempts. Try again in " in answer.text
    assert 0 < int(answer.headers["Retry-After"]) <= 301  # the rest of the 300-second window
    assert login(strict_idp, "bob")[1].status_code == 303  # other users are not locked out


def test_a_browser_that_signed_in_before_is_not_locked_out_by_others(strict_idp):
    carols_browser, answer = login(strict_idp, "carol")
    assert answer.status_code == 303 and carols_browser.cookies.get("idp_device", path="/login")
    for _ in range(3):  # someone else, from the same address, guessing carol's password
        login(strict_idp, "carol", password="bad-password")
    assert login(strict_idp, "carol")[1].status_code == 429  # a browser carol never used is paused ...
    page = carols_browser.get(f"{strict_idp.url}/login", params={"continue": "/", "force": "1"})
    again = submit_login(carols_browser, strict_idp.url, page, "carol")
    assert again.status_code == 303  # ... hers is not


def test_repeated_failures_from_one_address_are_throttled(strict_idp):
    for number in range(12):
        login(strict_idp, f"guess{number}", password="bad-password")
    _, answer = login(strict_idp, "dave")
    assert answer.status_code == 429
