"""The app's configuration holds no AWS key and has no place for one; its environment may not hand it any;
its boto3 finds only its role's credentials, and without them the app says so instead of failing."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from devstack.processes import free_port
from employee_directory.app import create_app
from employee_directory.aws import AwsAccess, AwsUnavailable, photo_type
from employee_directory.settings import AWS_KEY_VARIABLES, ConfigError, load_settings, refuse_aws_keys_in_environment
from tests.employee_directory.conftest import sign_in

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "employee-directory.yaml"
KEY_PATTERN = re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{12,}|aws_(access_key_id|secret_access_key|session_token)", re.I)

GOOD = """url: http://localhost:8003
identity_provider: {issuer: "http://127.0.0.1:8001", client_id: employee-directory, client_secret: a-long-enough-secret}
editors_group: hr
aws: {region: us-east-1, endpoint_url: "http://127.0.0.1:8002", table: Employees, bucket: "photos-{account_id}"}
"""


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "employee-directory.yaml"
    path.write_text(text)
    return path


def test_the_shipped_config_loads_and_holds_no_aws_key(monkeypatch):
    for name in ("EMPLOYEE_DIRECTORY_URL", "IDP_URL", "AWS_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(SHIPPED)
    assert settings.editors_group == "hr" and settings.table == "Employees" and settings.uploads_prefix == "uploads/"
    assert settings.redirect_uri == "http://localhost:8003/auth/callback"
    assert not KEY_PATTERN.search(SHIPPED.read_text())
    assert "client_secret" not in repr(settings) and settings.client_secret not in repr(settings)


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        (("aws: {", "aws: {aws_access_key_id: AKIAEXAMPLE, "), "aws.aws_access_key_id", "AWS keys never go here"),
        (("editors_group: hr", "editors_group: hr\nsecret_access_key: x"), "secret_access_key", "AWS keys never go"),
        (("url: http://localhost:8003", "url: localhost:8003"), "url", "not an http(s) address"),
        (("a-long-enough-secret", "short"), "identity_provider.client_secret", "at least 16"),
        (('"photos-{account_id}"', '"Photos_{account_id}"'), "aws.bucket", "not a valid S3 bucket name"),
        (("region: us-east-1", "region: moon"), "aws.region", "not an AWS region"),
        (("editors_group: hr", "editors_group: HR team"), "editors_group", "not a group name"),
        (('endpoint_url: "http://127.0.0.1:8002"', "endpoint_url: ftp://x"), "aws.endpoint_url", "not an http(s)"),
        (("table: Employees, ", ""), "aws.table", "is required"),
    ],
)
def test_a_mistake_names_the_file_the_key_and_the_problem(tmp_path, change, key, problem):
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    assert str(error.value).startswith(f"{path}: {key}: ") and problem in str(error.value)


def test_the_public_demo_secret_is_refused_over_https(tmp_path):
    text = GOOD.replace("http://localhost:8003", "https://directory.example.com").replace(
        "a-long-enough-secret", "demo-employee-directory-secret"
    )
    with pytest.raises(ConfigError, match="client_secret: is the public demo value"):
        load_settings(write(tmp_path, text))


def test_an_empty_endpoint_means_aws_itself(tmp_path):
    settings = load_settings(write(tmp_path, GOOD.replace('"http://127.0.0.1:8002"', '""')))
    assert settings.endpoint_url is None


@pytest.mark.parametrize("name", AWS_KEY_VARIABLES)
def test_the_app_refuses_an_environment_with_keys_or_a_profile(name):
    with pytest.raises(ConfigError, match=f"{name} set: the Employee Directory uses its role's credentials only"):
        refuse_aws_keys_in_environment({name: "x", "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:1"})
    refuse_aws_keys_in_environment({"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:1", "AWS_URL": "x"})


def test_check_config_says_so_and_stops_on_keys(tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    ok = subprocess.run(
        [sys.executable, "-m", "employee_directory", "check-config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0 and ok.stdout.startswith("OK: ")
    refused = subprocess.run(
        [sys.executable, "-m", "employee_directory", "serve"],
        capture_output=True,
        text=True,
        env={**env, "AWS_SECRET_ACCESS_KEY": "x"},
        timeout=60,
        check=False,
    )
    assert (
        refused.returncode == 2 and "AWS_SECRET_ACCESS_KEY set" in refused.stderr and "Traceback" not in refused.stderr
    )


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\x89PNG\r\n\x1a\nrest", "image/png"),
        (b"\xff\xd8\xff\xe0rest", "image/jpeg"),
        (b"GIF89arest", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"<svg/>", None),
        (b"%PDF-1.7", None),
        (b"", None),
    ],
)
def test_photos_are_recognised_by_their_first_bytes(data, kind):
    assert photo_type(data) == kind


# --- the real AWS side: boto3's default chain and nothing else ------------------------------------------------


@pytest.fixture
def no_aws_setup(monkeypatch, tmp_path):
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("IDP_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_URL", f"http://127.0.0.1:{free_port()}")
    return monkeypatch


def test_without_a_reachable_metadata_service_the_app_shows_a_clear_page_not_a_500(no_aws_setup, tmp_path):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    no_aws_setup.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint)
    client = create_app(load_settings(instance_dir=tmp_path / "instance")).test_client()
    sign_in(client)
    for path in ("/", "/status", "/employees/alice"):
        answer = client.get(path)
        page = answer.get_data(as_text=True)
        assert answer.status_code == 503, (path, page[:500])
        assert "AWS is out of reach - Employee Directory" in page
        assert f"the instance metadata service at {endpoint}" in page and "has no AWS credentials" in page


def test_credentials_that_are_not_a_roles_are_refused(no_aws_setup, tmp_path):
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text(
        "[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = x\n"
    )
    access = AwsAccess(load_settings(instance_dir=tmp_path / "instance"))
    with pytest.raises(AwsUnavailable, match="'shared-credentials-file', not a role's"):
        access.client("sts")
