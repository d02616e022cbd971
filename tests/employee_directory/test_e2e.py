"""The Employee Directory as the demo runs it (the `stack` fixture: devstack.stack.Stack starts the instance's
metadata service and the app beside the IdP, the portal and the emulator), driven with plain HTTP: sign in
through the IdP, read, upload as hr, the denied action; and what its process holds: no AWS key."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from devstack.stack import read_keys
from tests.support.directory_app import KEY_SHAPE, csrf, environ_of, sign_in_to_directory

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
REPO = Path(__file__).resolve().parents[2]


def signed_in(stack, username: str) -> requests.Session:
    """A person signed in to the app through the IdP's OIDC sign-in."""
    return sign_in_to_directory(stack.addresses["EMPLOYEE_DIRECTORY_URL"], stack.addresses["IDP_URL"], username)


def instance_id(stack) -> str:
    url = stack.addresses["INSTANCE_METADATA_URL"]
    token = requests.put(f"{url}/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}).text
    return requests.get(f"{url}/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token}).text


def test_hr_signs_in_lists_uploads_a_photo_and_meets_the_denied_action(stack):
    app = stack.addresses["EMPLOYEE_DIRECTORY_URL"]
    http = signed_in(stack, "heidi")
    listing = http.get(app + "/").text
    assert "Alice Anderson" in listing and "Dave Diaz" in listing
    assert "Dave Diaz" in http.get(app + "/", params={"q": "external"}).text

    page = http.get(app + "/employees/dave").text
    answer = http.post(
        app + "/employees/dave/photo",
        data={"csrf_token": csrf(page)},
        files={"photo": ("dave.png", PNG, "image/png")},
        allow_redirects=False,
    )
    assert answer.status_code == 302, answer.text[:2000]
    photo = http.get(app + "/employees/dave/photo")
    assert photo.status_code == 200 and photo.headers["Content-Type"] == "image/png" and photo.content == PNG

    status = http.get(app + "/status").text
    arn = f"arn:aws:sts::222222222222:assumed-role/EmployeeWebAppRole/{instance_id(stack)}"
    assert arn in status and "Issued (last rotation)" in status
    tried = http.post(app + "/status/try-to-delete-the-bucket", data={"csrf_token": csrf(status)}).text
    assert "Denied: AccessDenied" in tried and "arn:aws:s3:::employee-directory-photos-222222222222" in tried


def test_an_engineer_reads_but_may_not_upload(stack):
    app = stack.addresses["EMPLOYEE_DIRECTORY_URL"]
    http = signed_in(stack, "bob")
    page = http.get(app + "/employees/alice").text
    assert "Only members of hr change photos" in page
    answer = http.post(
        app + "/employees/alice/photo", data={"csrf_token": csrf(page)}, files={"photo": ("x.png", PNG, "image/png")}
    )
    assert answer.status_code == 403 and "Only members of hr may change photos" in answer.text


def test_the_apps_process_environment_and_configuration_hold_no_aws_key(stack):
    app = stack.processes["employee-directory"]
    environ = environ_of(app.pid)
    aws_names = {name.decode() for name in environ if name.startswith(b"AWS_")}
    # Where things are, and nothing else: no key, token, profile or credentials file.
    assert aws_names == {"AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_URL"}
    assert environ[b"AWS_EC2_METADATA_SERVICE_ENDPOINT"].decode() == stack.addresses["INSTANCE_METADATA_URL"]
    everything = b"\0".join(environ.values()) + Path(f"/proc/{app.pid}/cmdline").read_bytes()
    management = read_keys(stack.credentials_file)
    assert management and management["AWS_SECRET_ACCESS_KEY"].encode() not in everything
    assert management["AWS_ACCESS_KEY_ID"].encode() not in everything and not KEY_SHAPE.search(everything)
    home = Path(environ[b"HOME"].decode())
    assert home.is_dir() and not (home / ".aws").exists()  # a fresh instance: no ~/.aws
    config = Path(
        environ.get(b"EMPLOYEE_DIRECTORY_CONFIG", b"").decode() or REPO / "config" / "employee-directory.yaml"
    )
    assert not KEY_SHAPE.search(config.read_bytes()) and b"secret_access_key" not in config.read_bytes().lower()


def test_no_secret_reaches_the_logs(stack):
    test_hr_signs_in_lists_uploads_a_photo_and_meets_the_denied_action(stack)
    url = stack.addresses["INSTANCE_METADATA_URL"]
    token = requests.put(f"{url}/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}).text
    headers = {"X-aws-ec2-metadata-token": token}
    role = requests.get(f"{url}/latest/meta-data/iam/security-credentials/", headers=headers).text
    served = json.loads(requests.get(f"{url}/latest/meta-data/iam/security-credentials/{role}", headers=headers).text)
    logs = stack.logs("employee-directory") + stack.logs("instance-metadata")
    for secret in (served["SecretAccessKey"], served["Token"], served["AccessKeyId"], token):
        assert secret not in logs
    assert "code=" not in stack.logs("employee-directory")  # the callback is logged by its path only
    assert "/auth/callback" in stack.logs("employee-directory")
