"""The directory refuses to load when it is wrong, naming the file, the key and the problem."""

import shutil
from pathlib import Path

import pytest

from idp_mock.directory import load_directory
from idp_mock.passwords import hash_password, verify_password
from sso_common.config import ConfigError

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"
HASH = hash_password("correct horse battery")


def directory_file(tmp_path, users: str, groups: str = "  engineering: {}\n") -> Path:
    path = tmp_path / "directory.yaml"
    path.write_text(f"groups:\n{groups}users:\n{users}")
    return path


def user(name="bob", email=None, groups="[engineering]", extra=""):
    return (
        f"  {name}:\n    name: Test User\n    email: {email or name + '@example.com'}\n"
        f"    groups: {groups}\n    password_hash: '{HASH}'\n{extra}"
    )


def test_seeded_directory_has_the_expected_employees():
    directory = load_directory(REPO_CONFIG / "directory.yaml")
    groups = {name: set(e.groups) for name, e in directory.employees.items()}
    assert groups == {
        "alice": {"engineering", "aws-admins"},
        "bob": {"engineering"},
        "carol": {"finance"},
        "dave": {"contractors"},
        "erin": {"security", "engineering"},
        "frank": {"engineering"},
        "grace": {"security"},
        "heidi": {"hr"},
    }
    assert directory.employees["erin"].mfa_required and not directory.employees["bob"].mfa_required
    assert directory.employees["frank"].disabled
    assert all(e.email == f"{name}@example.com" and e.department for name, e in directory.employees.items())
    assert all(verify_password(e.password_hash, "Welcome-2026") for e in directory.employees.values())


def test_subjects_are_stable_and_unique():
    first = load_directory(REPO_CONFIG / "directory.yaml")
    second = load_directory(REPO_CONFIG / "directory.yaml")
    subjects = [e.subject for e in first.employees.values()]
    assert len(set(subjects)) == len(subjects)
    assert subjects == [e.subject for e in second.employees.values()]


def test_no_plain_passwords_in_the_config():
    assert "Welcome-2026" not in (REPO_CONFIG / "directory.yaml").read_text().replace("password is Welcome-2026", "")


@pytest.mark.parametrize(
    "users, groups, key, problem",
    [
        (user(groups="[engineering, nope]"), "  engineering: {}\n", "users.bob.groups[1]", "unknown group 'nope'"),
        (user() + user(), "  engineering: {}\n", "bob", "duplicate key"),
        (user(email="not-an-email"), "  engineering: {}\n", "users.bob.email", "not a valid email address"),
        (user() + user("eve", email="bob@example.com"), "  engineering: {}\n", "users.eve.email", "already used"),
        (user(extra="    colour: blue\n"), "  engineering: {}\n", "users.bob.colour", "unknown key"),
        (user(extra="    totp_secret: short\n"), "  engineering: {}\n", "users.bob.totp_secret", "base32"),
        (user(extra="    disabled: maybe\n"), "  engineering: {}\n", "users.bob.disabled", "true or false"),
        (user("Bad Name"), "  engineering: {}\n", "users.Bad Name", "not a valid username"),
    ],
)
def test_bad_directories_are_refused(tmp_path, users, groups, key, problem):
    path = directory_file(tmp_path, users, groups)
    with pytest.raises(ConfigError) as error:
        load_directory(path)
    message = str(error.value)
    assert message.startswith(str(path)) and key in message and problem in message


def test_plain_text_password_is_refused(tmp_path):
    path = directory_file(tmp_path, user().replace(f"'{HASH}'", "Welcome-2026"))
    with pytest.raises(ConfigError, match=r"users\.bob\.password_hash: must be an argon2id hash"):
        load_directory(path)


def test_idp_refuses_to_start_on_a_bad_directory(tmp_path):
    """The service itself, not only the loader: `idp-mock check-config` exits 2 naming file and key."""
    import subprocess
    import sys

    shutil.copy(REPO_CONFIG / "idp.yaml", tmp_path / "idp.yaml")
    directory_file(tmp_path, user(groups="[engineering, ghosts]"))
    result = subprocess.run(
        [sys.executable, "-m", "idp_mock", "--config", str(tmp_path / "idp.yaml"), "check-config"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "directory.yaml: users.bob.groups[1]: unknown group 'ghosts'" in result.stderr


def test_hash_password_command_reads_stdin_and_prints_a_verifiable_hash():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "idp_mock", "hash-password"],
        input="a-new-long-password\n",
        capture_output=True,
        text=True,
        check=True,
    )
    encoded = result.stdout.strip()
    assert encoded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert verify_password(encoded, "a-new-long-password") and not verify_password(encoded, "wrong")
    assert "a-new-long-password" not in result.stdout + result.stderr
