"""The app with a stand-in for its AWS side (what the views ask of it, answered from memory), a signed-in
person, and the CSRF token of their session."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from employee_directory.app import create_app
from employee_directory.aws import Attempt, AwsUnavailable, CredentialView, Employee, Photo
from employee_directory.settings import load_settings

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
ALICE = Employee("alice", "Alice Martin", "Security", "alice@example.com", "photos/alice.svg")
HEIDI = Employee("heidi", "Heidi Hoffmann", "People (HR)", "heidi@example.com", "photos/heidi.svg")


class MemoryAws:
    """The AwsAccess methods the views use, over a dict; `unavailable` makes every call fail as AWS out of reach."""

    def __init__(self):
        self.people = {e.username: e for e in (ALICE, HEIDI)}
        self.photos: dict[str, Photo] = {"alice": Photo(b"<svg/>", "image/svg+xml", False)}
        self.unavailable: str | None = None
        self.denied = True
        self.uploads: list[tuple[str, str, str]] = []

    def _check(self):
        if self.unavailable:
            raise AwsUnavailable(self.unavailable)

    def employees(self):
        self._check()
        return sorted(self.people.values(), key=lambda e: e.display_name)

    def employee(self, username):
        self._check()
        return self.people.get(username)

    def photo(self, employee):
        self._check()
        return self.photos.get(employee.username)

    def put_photo(self, employee, data, content_type, uploaded_by):
        self._check()
        self.photos[employee.username] = Photo(data, content_type, True)
        self.uploads.append((employee.username, content_type, uploaded_by))
        return f"uploads/{employee.username}"

    def identity(self):
        self._check()
        return {
            "Arn": "arn:aws:sts::222222222222:assumed-role/EmployeeWebAppRole/i-0123456789abcdef0",
            "Account": "222222222222",
            "UserId": "AROA:i-0123456789abcdef0",
        }

    def credential_view(self):
        self._check()
        now = datetime.now(UTC)
        return CredentialView("iam-role", "the instance metadata service", "ASIA…ABCD", now, now, now, 0, None)

    def bucket(self):
        return "employee-directory-photos-222222222222"

    def try_to_delete_the_bucket(self):
        if self.denied:
            return Attempt("s3:DeleteBucket", "arn:aws:s3:::b", True, "AccessDenied", "Access Denied")
        return Attempt("s3:DeleteBucket", "arn:aws:s3:::b", False, "BucketNotEmpty", "The bucket is not empty")


@pytest.fixture
def aws():
    return MemoryAws()


@pytest.fixture
def app(aws, tmp_path, monkeypatch):
    monkeypatch.setenv("IDP_URL", "http://127.0.0.1:9")  # nothing listens: the IdP is never needed here
    monkeypatch.setenv("EMPLOYEE_DIRECTORY_URL", "http://localhost:8003")
    application = create_app(load_settings(instance_dir=tmp_path / "instance"), aws=aws)
    application.config["TESTING"] = False  # errors as people get them (pages), not raised into the test
    return application


@pytest.fixture
def client(app):
    return app.test_client()


def sign_in(client, username: str = "bob", groups: tuple[str, ...] = ("engineering",)) -> str:
    """A signed-in session as the callback leaves it; returns its CSRF token."""
    with client.session_transaction() as session:
        session["user"] = {
            "username": username,
            "name": username.title(),
            "email": f"{username}@example.com",
            "groups": list(groups),
        }
        session["csrf"] = "test-csrf-token"
    return "test-csrf-token"
