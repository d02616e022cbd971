"""The app's pages with its AWS side in memory: who may see and do what (the app's own rule: only hr
changes photos), bad input as clear 4xx pages, AWS out of reach as a 503 page, never a 500."""

from __future__ import annotations

import io
import re

import pytest
from botocore.exceptions import ClientError

from employee_directory.aws import MAX_PHOTO_BYTES
from tests.employee_directory.conftest import PNG, sign_in

TITLE = " - Employee Directory"


def title(response) -> str:
    found = re.search(r"<title>(.*?)</title>", response.get_data(as_text=True), re.S)
    return found.group(1).strip() if found else ""


def upload(client, csrf: str | None, data: bytes = PNG, filename: str = "me.png", username: str = "alice"):
    form = {"photo": (io.BytesIO(data), filename)}
    if csrf is not None:
        form["csrf_token"] = csrf
    return client.post(f"/employees/{username}/photo", data=form, content_type="multipart/form-data")


def test_health_needs_nobody(client):
    assert client.get("/healthz").json == {"status": "ok", "service": "Employee Directory"}


@pytest.mark.parametrize("path", ["/", "/?q=x", "/employees/alice", "/employees/alice/photo", "/status"])
def test_every_page_needs_a_signed_in_person(client, path):
    answer = client.get(path)
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/login?next=")


def test_the_list_and_the_search(client):
    sign_in(client)
    everyone = client.get("/")
    assert everyone.status_code == 200 and title(everyone) == "Employees" + TITLE
    page = everyone.get_data(as_text=True)
    assert "Alice Martin" in page and "Heidi Hoffmann" in page
    found = client.get("/?q=SECUR").get_data(as_text=True)
    assert "Alice Martin" in found and "Heidi Hoffmann" not in found and "1 of 2 match" in found
    assert "Nobody matches" in client.get("/?q=nobody-at-all").get_data(as_text=True)
    too_long = client.get("/?q=" + "x" * 101)
    assert too_long.status_code == 400 and "at most 100" in too_long.get_data(as_text=True)


def test_only_hr_sees_the_upload_form(client):
    sign_in(client, "bob")
    page = client.get("/employees/alice").get_data(as_text=True)
    assert 'name="photo"' not in page and "Only members of hr change photos" in page
    sign_in(client, "heidi", ("hr",))
    page = client.get("/employees/alice").get_data(as_text=True)
    assert '<label for="photo">New photo</label>' in page and 'type="file"' in page


def test_someone_outside_hr_cannot_upload_even_by_hand(client, aws):
    csrf = sign_in(client, "bob")
    answer = upload(client, csrf)
    assert answer.status_code == 403 and title(answer) == "Not allowed" + TITLE
    assert "Only members of hr may change photos" in answer.get_data(as_text=True)
    assert aws.uploads == []


def test_hr_uploads_a_photo_and_it_is_served_as_an_image_only(client, aws):
    csrf = sign_in(client, "heidi", ("hr",))
    answer = upload(client, csrf)
    assert answer.status_code == 302 and answer.headers["Location"] == "/employees/alice"
    assert aws.uploads == [("alice", "image/png", "heidi")]
    assert "The new photo of Alice Martin is saved." in client.get("/employees/alice").get_data(as_text=True)
    photo = client.get("/employees/alice/photo")
    assert photo.status_code == 200 and photo.mimetype == "image/png" and photo.data == PNG
    assert (
        "sandbox" in photo.headers["Content-Security-Policy"] and photo.headers["X-Content-Type-Options"] == "nosniff"
    )


@pytest.mark.parametrize(
    ("data", "filename", "status", "said"),
    [
        (b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>", "x.png", 400, "not a PNG, JPEG, GIF or WebP"),
        (b"<html><script>alert(1)</script></html>", "x.jpg", 400, "not a PNG, JPEG, GIF or WebP"),
        (b"", "empty.png", 400, "not a PNG"),
        (PNG, "", 400, "Choose a photo"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * MAX_PHOTO_BYTES, "big.png", 413, "too large"),
    ],
)
def test_what_is_not_a_photo_is_refused_clearly(client, aws, data, filename, status, said):
    csrf = sign_in(client, "heidi", ("hr",))
    answer = upload(client, csrf, data, filename)
    assert answer.status_code == status and said in answer.get_data(as_text=True)
    assert aws.uploads == []


def test_a_request_larger_than_any_photo_is_413_not_500(client, aws):
    csrf = sign_in(client, "heidi", ("hr",))
    answer = upload(client, csrf, PNG + b"\x00" * (3 * MAX_PHOTO_BYTES))
    assert answer.status_code == 413 and "at most 1 MB" in answer.get_data(as_text=True)


@pytest.mark.parametrize("csrf", [None, "", "wrong"])
def test_a_form_without_its_csrf_token_is_refused(client, aws, csrf):
    sign_in(client, "heidi", ("hr",))
    answer = upload(client, csrf)
    assert answer.status_code == 400 and "did not come from this site" in answer.get_data(as_text=True)
    assert aws.uploads == []
    assert client.post("/status/try-to-delete-the-bucket", data={"csrf_token": csrf or ""}).status_code == 400


@pytest.mark.parametrize("username", ["nobody", "..%2Fetc", "Alice", "a" * 80])
def test_unknown_people_are_404(client, username):
    sign_in(client)
    for path in (f"/employees/{username}", f"/employees/{username}/photo"):
        answer = client.get(path)
        assert answer.status_code == 404 and title(answer) == "Not Found" + TITLE, path


def test_aws_out_of_reach_is_a_clear_503_page(client, aws):
    sign_in(client)
    aws.unavailable = "The Employee Directory has no AWS credentials: the instance metadata service gave none."
    for path in ("/", "/employees/alice", "/status"):
        answer = client.get(path)
        assert answer.status_code == 503 and title(answer) == "AWS is out of reach" + TITLE, path
        assert "has no AWS credentials" in answer.get_data(as_text=True)


def test_an_aws_refusal_is_a_502_page_that_points_at_the_role(client, aws, monkeypatch):
    sign_in(client)

    def refused():
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not authorized"}}, "Scan")

    monkeypatch.setattr(aws, "employees", refused)
    answer = client.get("/")
    assert answer.status_code == 502 and "AWS refused Scan with AccessDenied" in answer.get_data(as_text=True)


def test_a_bug_is_a_500_page_with_a_reference_and_no_details(client, aws, monkeypatch):
    sign_in(client)
    monkeypatch.setattr(aws, "employees", lambda: 1 / 0)
    answer = client.get("/")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 500 and re.search(r"Reference: [0-9a-f]{12}", page)
    assert "ZeroDivisionError" not in page and "Traceback" not in page


def test_the_status_page_and_the_denied_action(client, aws):
    csrf = sign_in(client)
    page = client.get("/status")
    assert page.status_code == 200 and title(page) == "How this app reaches AWS" + TITLE
    text = page.get_data(as_text=True)
    assert "assumed-role/EmployeeWebAppRole/i-0123456789abcdef0" in text and "Try to delete the photos bucket" in text
    tried = client.post("/status/try-to-delete-the-bucket", data={"csrf_token": csrf}).get_data(as_text=True)
    assert "Denied: AccessDenied" in tried and "s3:DeleteBucket" in tried
    aws.denied = False
    tried = client.post("/status/try-to-delete-the-bucket", data={"csrf_token": csrf}).get_data(as_text=True)
    assert "Not denied: BucketNotEmpty" in tried and "broader than it should be" in tried


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x"])
def test_no_open_redirect_after_sign_in(client, target):
    sign_in(client)
    answer = client.get("/login", query_string={"next": target})
    assert answer.status_code == 302 and answer.headers["Location"] == "/"
    assert client.get("/login", query_string={"next": "/status"}).headers["Location"] == "/status"


def test_pages_carry_the_security_headers(client):
    sign_in(client)
    headers = client.get("/").headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"] and headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-store" and headers["Referrer-Policy"] == "no-referrer"


def test_sign_out_needs_a_post_with_the_token_and_ends_the_session(client):
    csrf = sign_in(client)
    assert client.get("/logout").status_code == 405
    answer = client.post("/logout", data={"csrf_token": csrf})
    assert answer.status_code == 302 and answer.headers["Location"] == "/signed-out"
    assert client.get("/").status_code == 302  # signed out


@pytest.mark.parametrize(
    ("query", "status"),
    [("error=access_denied&state=x", 403), ("code=abc&state=unknown", 400), ("", 400), ("error=server_error", 400)],
)
def test_a_bad_sign_in_answer_is_a_clear_page(client, query, status):
    answer = client.get(f"/auth/callback?{query}")
    assert answer.status_code == status and title(answer) == "Not signed in" + TITLE


def test_the_idp_out_of_reach_is_a_502_page(client):
    answer = client.get("/login")
    assert answer.status_code == 502 and "sign-in service does not answer" in answer.get_data(as_text=True)


def test_the_session_cookie_is_the_apps_own_and_httponly(client):
    sign_in(client)
    client.get("/")
    cookie = client.get_cookie("directory_session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
