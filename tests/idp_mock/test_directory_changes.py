"""The mock IdP's directory at run time (idp_mock/directory.py, directory_admin.py, `idp-mock directory`): changes
are checked, stored in the change log, seen by every worker and after a restart, and take effect at sign-in."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import requests

from idp_mock.app import create_app
from idp_mock.directory import ChangeRefused, LiveDirectory, apply_change, checked_change
from idp_mock.passwords import hash_password
from idp_mock.settings import load_settings
from sso_common.store.memory import MemoryChangeLog
from tests.support.idp_client import DEMO_PASSWORD
from tests.support.servers import REPO

TOKEN = "demo-directory-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HASH = hash_password("A-long-enough-password")


@pytest.fixture(scope="module")
def base():
    return load_settings().directory


@pytest.fixture
def live(base):
    return LiveDirectory(base, MemoryChangeLog())


def settings_in(tmp_path, **changes):
    """The shipped IdP settings with stores in `tmp_path` (SQLite: shared by every app built on them)."""
    settings = load_settings(instance_dir=tmp_path / "instance")
    stores = {
        **settings.stores,
        "changes": f"sqlite:///{tmp_path / 'changes.db'}",
        "state": f"sqlite:///{tmp_path / 'state.db'}",
    }
    return dataclasses.replace(settings, stores=stores, **changes)


# --- the changes, pure --------------------------------------------------------------------------------------


def test_each_change_applies_and_a_stale_one_changes_nothing(base, live):
    live.change({"op": "disable", "username": "bob"})
    assert live.find("bob").disabled is True and base.find("bob").disabled is False
    live.change({"op": "add_member", "username": "bob", "group": "aws-admins"})
    live.change({"op": "remove_member", "username": "bob", "group": "engineering"})
    assert live.find("bob").groups == ("aws-admins",)
    position, record = live.change(
        {
            "op": "add_user",
            "user": {"username": "ivan", "email": "ivan@example.com", "name": "Ivan I", "password_hash": HASH},
        }
    )
    assert live.find("ivan").email == "ivan@example.com" and position == live.position
    live.change({"op": "delete_user", "username": "ivan"})
    assert live.find("ivan") is None
    replayed = apply_change(live.current(), record)  # the same add again (another worker, a replay): harmless...
    assert replayed.find("ivan").subject == record["user"]["subject"]
    stale = {"op": "disable", "username": "alice", "subject": "someone-else"}
    assert apply_change(live.current(), stale) is live.current()  # ...and a change for another person is ignored


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"op": "explode", "username": "bob"}, "op"),
        ({"op": "disable", "username": "nobody"}, "no user"),
        ({"op": "add_member", "username": "bob", "group": "no-such-group"}, "group"),
        (
            {
                "op": "add_user",
                "user": {"username": "Bad Name", "email": "x@example.com", "name": "X", "password_hash": HASH},
            },
            "username",
        ),
        (
            {
                "op": "add_user",
                "user": {"username": "bob", "email": "b2@example.com", "name": "B", "password_hash": HASH},
            },
            "already exists",
        ),
        (
            {
                "op": "add_user",
                "user": {"username": "ivan", "email": "alice@example.com", "name": "I", "password_hash": HASH},
            },
            "already used",
        ),
        (
            {
                "op": "add_user",
                "user": {"username": "ivan", "email": "not-an-address", "name": "I", "password_hash": HASH},
            },
            "email",
        ),
        (
            {
                "op": "add_user",
                "user": {"username": "ivan", "email": "ivan@example.com", "name": "I", "password_hash": "x"},
            },
            "password",
        ),
        (
            {
                "op": "add_user",
                "user": {"username": "ivan", "email": "ivan@example.com", "name": "\u0000", "password_hash": HASH},
            },
            "name",
        ),
        (
            {
                "op": "add_user",
                "user": {
                    "username": "ivan",
                    "email": "ivan@example.com",
                    "name": "I",
                    "password_hash": HASH,
                    "groups": ["nope"],
                },
            },
            "groups",
        ),
    ],
)
def test_a_change_that_cannot_apply_is_refused_and_not_stored(live, change, problem):
    with pytest.raises(ChangeRefused, match=problem):
        live.change(change)
    assert live.log.last() == 0


def test_checked_changes_name_the_person_by_subject_too(base):
    record = checked_change(base, {"op": "disable", "username": "BOB"})
    assert record == {"op": "disable", "username": "bob", "subject": base.find("bob").subject}


# --- stored: every worker, every start --------------------------------------------------------------------------


def test_every_worker_and_the_next_start_see_a_change(tmp_path):
    first, second = create_app(settings_in(tmp_path)), create_app(settings_in(tmp_path))  # two workers
    answer = first.test_client().post("/admin/directory/users/bob/disable", headers=AUTH)
    assert answer.status_code == 202 and answer.get_json()["position"] == 1
    assert second.extensions["idp"].directory.find("bob").disabled is True
    restarted = create_app(settings_in(tmp_path))
    assert restarted.extensions["idp"].directory.find("bob").disabled is True
    refused = restarted.test_client().post("/login", data={"username": "bob", "password": DEMO_PASSWORD})
    assert refused.status_code in (400, 403)  # the CSRF check or the disabled account: never signed in


# --- the admin API ---------------------------------------------------------------------------------------------


@pytest.fixture
def admin(tmp_path):
    return create_app(settings_in(tmp_path)).test_client()


def test_the_admin_api_needs_its_token_and_is_off_without_one(tmp_path, admin):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        answer = admin.post("/admin/directory/users/bob/disable", headers=headers)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == 'Bearer realm="directory"'
    off = settings_in(tmp_path / "off")
    off = dataclasses.replace(off, provisioning=dataclasses.replace(off.provisioning, admin_token=""))
    assert create_app(off).test_client().get("/admin/directory/sync", headers=AUTH).status_code == 404


def test_users_are_added_changed_and_deleted_through_the_api(admin):
    answer = admin.post(
        "/admin/directory/users",
        json={
            "username": "ivan",
            "email": "ivan@example.com",
            "name": "Ivan Ivanov",
            "password": "A-long-password-1",
            "groups": ["engineering"],
        },
        headers=AUTH,
    )
    assert answer.status_code == 202 and "password" not in str(answer.get_json())
    user = admin.get("/admin/directory/users/ivan", headers=AUTH).get_json()
    assert user["email"] == "ivan@example.com" and user["groups"] == ["engineering"] and user["disabled"] is False
    assert admin.put("/admin/directory/groups/aws-admins/members/ivan", headers=AUTH).status_code == 202
    assert admin.delete("/admin/directory/groups/engineering/members/ivan", headers=AUTH).status_code == 202
    assert admin.get("/admin/directory/users/ivan", headers=AUTH).get_json()["groups"] == ["aws-admins"]
    assert admin.post("/admin/directory/users/ivan/disable", headers=AUTH).status_code == 202
    assert admin.post("/admin/directory/users/ivan/enable", headers=AUTH).status_code == 202
    assert admin.delete("/admin/directory/users/ivan", headers=AUTH).status_code == 202
    assert admin.get("/admin/directory/users/ivan", headers=AUTH).status_code == 404


IVAN = {"username": "ivan", "email": "ivan@example.com", "name": "I", "password": "A-long-password-1"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        (
            "post",
            "/admin/directory/users",
            {"username": "ivan", "email": "ivan@example.com", "name": "I", "password": "short"},
            400,
        ),
        (
            "post",
            "/admin/directory/users",
            {"username": "bob", "email": "b@example.com", "name": "B", "password": "A-long-password-1"},
            409,
        ),
        ("post", "/admin/directory/users", ["not", "an", "object"], 400),
        ("post", "/admin/directory/users", {**IVAN, "group": []}, 400),  # a misspelt field
        ("post", "/admin/directory/users", {**IVAN, "disabled": "no"}, 400),
        ("post", "/admin/directory/users/nobody/disable", None, 400),
        ("post", "/admin/directory/users/bob/explode", None, 404),
        ("put", "/admin/directory/groups/no-such-group/members/bob", None, 400),
    ],
)
def test_bad_changes_are_refused_with_a_reason(admin, method, path, body, status):
    answer = getattr(admin, method)(path, json=body, headers=AUTH)
    assert answer.status_code == status and answer.get_json()["error_description"]
    assert admin.get("/admin/directory/sync", headers=AUTH).get_json()["log_position"] == 0


def test_a_method_an_address_does_not_take_is_answered_in_the_apis_json(admin):
    answer = admin.patch("/admin/directory/users", headers=AUTH)
    assert answer.status_code == 405 and answer.get_json()["error"] == "invalid_request"
    assert "POST" in answer.headers["Allow"]


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 3000 + b"]" * 3000,
        b'{"username": "q", "email": "q@example.com", "name": "Q", "password": "\\ud800-long-one-1"}',
    ],
    ids=["nested-too-deeply", "lone-surrogate-password"],
)
def test_json_nobody_can_keep_is_refused_as_unreadable(admin, body):
    """Both were a 500 (the recursion limit; the password hash cannot encode a lone surrogate)."""
    answer = admin.post("/admin/directory/users", data=body, content_type="application/json", headers=AUTH)
    assert answer.status_code == 400 and answer.get_json()["error_description"]
    assert admin.get("/admin/directory/sync", headers=AUTH).get_json()["log_position"] == 0


def test_the_login_pages_demo_hint_lists_the_directory_file(admin):
    """The list was written in the template and missed heidi. A person added at run time has a password of their
    own, so is not listed under the demo password."""
    hint = admin.get("/login").get_data(as_text=True).split('aria-label="Demo users"')[1].split("</aside>")[0]
    for username in ("alice", "bob", "carol", "dave", "grace", "heidi"):
        assert f"<strong>{username}</strong>" in hint
    assert "<strong>erin</strong> (needs a TOTP code)" in hint and "<strong>frank</strong> (disabled)" in hint
    added = {"username": "ivan", "email": "ivan@example.com", "name": "Ivan", "password": "A-long-password-1"}
    assert admin.post("/admin/directory/users", json=added, headers=AUTH).status_code == 202
    assert "<strong>ivan</strong>" not in admin.get("/login").get_data(as_text=True)


def test_the_cli_changes_the_same_directory(tmp_path):
    config = tmp_path / "idp.yaml"
    config.write_text(
        (REPO / "config" / "idp.yaml")
        .read_text()
        .replace("directory: directory.yaml", f"directory: {REPO / 'config' / 'directory.yaml'}")
    )
    env = {"IDP_INSTANCE_DIR": str(tmp_path / "instance"), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "idp_mock", "--config", str(config), "directory", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    assert cli("disable", "bob").returncode == 0
    added = cli(
        "add",
        "ivan",
        "--email",
        "ivan@example.com",
        "--name",
        "Ivan I",
        "--groups",
        "engineering",
        stdin="A-long-password-1\n",
    )
    assert added.returncode == 0, added.stderr
    assert cli("add-member", "aws-admins", "ivan").returncode == 0
    refused = cli("disable", "nobody")
    assert refused.returncode == 1 and "no user" in refused.stderr
    listing = cli("list").stdout
    assert "bob\tbob@example.com\tengineering (disabled)" in listing
    assert "ivan\tivan@example.com\tengineering,aws-admins" in listing
    settings = load_settings(config, tmp_path / "instance")
    assert create_app(settings).extensions["idp"].directory.find("bob").disabled is True


def test_a_disabled_user_cannot_sign_in_at_the_running_idp(idp):
    """Against the real server (several requests, the login form): disabled at run time, refused at once."""
    from tests.support.idp_client import form_fields

    http = requests.Session()
    answer = requests.post(f"{idp.url}/admin/directory/users/heidi/disable", headers=AUTH, timeout=10)
    assert answer.status_code == 202
    try:
        page = http.get(f"{idp.url}/login")
        refused = http.post(
            f"{idp.url}/login", data={**form_fields(page.text), "username": "heidi", "password": DEMO_PASSWORD}
        )
        assert refused.status_code == 403 and "disabled" in refused.text
    finally:
        requests.post(f"{idp.url}/admin/directory/users/heidi/enable", headers=AUTH, timeout=10)
