"""What devstack/aws_emulator.py changes in moto for the cost of a request: a session found by its access key
without a scan of every session issued, a host name's service resolved once, the SigV4 signature of a form
body checked over the bytes received, an AssumeRoleWithSAML assertion read once, a response class's action names
listed once (see docs/moto-notes.md), and an unsigned request refused with a 403, not a 500. Some in this process
(moto's objects patched here, as in the emulator's process), the others against the emulator itself."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from devstack import aws_emulator
from devstack.aws_emulator import MotoServer

ACCOUNT = "444444444444"  # no other test in this process uses moto's in-process backends


@pytest.fixture(scope="module")
def patched():
    aws_emulator.install_patches()


def test_a_session_is_found_by_its_access_key_without_scanning_the_others(patched, monkeypatch):
    from moto.iam.access_control import AssumedRoleAccessKey, CreateAccessKeyFailure
    from moto.sts.models import sts_backends

    backend = sts_backends[ACCOUNT]["aws"]
    sessions = [
        backend.assume_role(
            region_name="us-east-1",
            role_session_name=f"session-{number}",
            role_arn=f"arn:aws:iam::{ACCOUNT}:role/Reader",
            policy=None,
            duration=900,
            external_id=None,
        )
        for number in range(300)
    ]

    def no_scan(self):
        raise AssertionError("the sessions were scanned")

    monkeypatch.setattr(type(backend.assumed_roles), "__iter__", no_scan)
    newest = sessions[-1]
    key = AssumedRoleAccessKey(ACCOUNT, "aws", newest.access_key_id, {"X-Amz-Security-Token": newest.session_token})
    assert key.arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/Reader/session-299"
    assert key.create_credentials().token == newest.session_token
    assert backend.get_assumed_role_from_access_key(sessions[0].access_key_id) is sessions[0]
    # moto's checks are kept: the session token must be the session's, the key must be known.
    with pytest.raises(CreateAccessKeyFailure) as wrong_token:
        AssumedRoleAccessKey(ACCOUNT, "aws", newest.access_key_id, {"X-Amz-Security-Token": sessions[0].session_token})
    assert wrong_token.value.reason == "InvalidToken"
    with pytest.raises(CreateAccessKeyFailure) as unknown:
        AssumedRoleAccessKey(ACCOUNT, "aws", "ASIAUNKNOWN000000000", {"X-Amz-Security-Token": newest.session_token})
    assert unknown.value.reason == "InvalidId"


def test_the_service_of_a_host_name_is_resolved_once(patched, monkeypatch):
    from moto import backends
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    listings = []
    listing = backends.list_of_moto_modules
    monkeypatch.setattr(backends, "list_of_moto_modules", lambda: listings.append(1) or listing())
    dispatcher = DomainDispatcherApplication(create_backend_app)
    environ = {
        "PATH_INFO": "/",
        "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20260101/us-east-1/sts/aws4_request, "
        "SignedHeaders=host, Signature=0",
    }
    first = dispatcher.get_application(dict(environ))
    assert dispatcher.get_application(dict(environ)) is first
    assert len(listings) == 1  # moto lists its package folder (and stats ~200 entries) per request without it


def _saml_response(attributes: dict[str, str]) -> str:
    """A base64 SAML Response carrying these AWS attributes (what the emulator reads; it checks no signature)."""
    values = "".join(
        f'<saml:Attribute Name="https://aws.amazon.com/SAML/Attributes/{name}">'
        f"<saml:AttributeValue>{value}</saml:AttributeValue></saml:Attribute>"
        for name, value in attributes.items()
    )
    xml = (
        '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"><saml:Assertion>'
        f"<saml:AttributeStatement>{values}</saml:AttributeStatement></saml:Assertion></samlp:Response>"
    )
    return base64.b64encode(xml.encode()).decode()


def test_assume_role_with_saml_reads_the_assertion_once_and_makes_moto_s_session(patched, monkeypatch):
    """The session is the one moto's own code makes (role, session name, duration from SessionDuration), with
    the SourceIdentity kept, and without moto's xmltodict parse; an assertion moto's code must answer (here,
    no RoleSessionName) still goes to it."""
    import xmltodict
    from moto.sts.models import sts_backends

    parses = []
    parse = xmltodict.parse
    monkeypatch.setattr(xmltodict, "parse", lambda *args, **kwargs: parses.append(1) or parse(*args, **kwargs))
    backend = sts_backends[ACCOUNT]["aws"]
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/Reader"
    provider = f"arn:aws:iam::{ACCOUNT}:saml-provider/Broker"
    assertion = _saml_response(
        {
            "Role": f"{role_arn},{provider}",
            "RoleSessionName": "ana@example.com",
            "SessionDuration": "1800",
            "SourceIdentity": "ana@example.com",
        }
    )
    before = datetime.now(UTC)
    session = backend.assume_role_with_saml(role_arn=role_arn, principal_arn=provider, saml_assertion=assertion)
    assert parses == []  # moto's own reading parses with xmltodict
    assert (session.role_arn, session.session_name, session.source_identity) == (
        role_arn,
        "ana@example.com",
        "ana@example.com",
    )
    assert timedelta(seconds=1795) <= session.expiration.replace(tzinfo=UTC) - before <= timedelta(seconds=1805)
    assert session.arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/Reader/ana@example.com"
    assert backend.assumed_roles[-1] is session and backend.get_assumed_role_from_access_key(session.access_key_id)

    unnamed = _saml_response({"Role": f"{role_arn},{provider}", "SessionDuration": "900"})
    with pytest.raises(Exception):  # noqa: B017, PT011 - moto's own answer to it (a TypeError there: its 500)
        backend.assume_role_with_saml(role_arn=role_arn, principal_arn=provider, saml_assertion=unnamed)
    assert parses == [1]


def test_a_response_class_s_action_names_are_listed_once(patched, monkeypatch):
    import inspect

    from moto.core import responses

    class Actions(responses.BaseResponse):
        def first_action(self):
            return None

    listings = []
    members = inspect.getmembers
    monkeypatch.setattr(inspect, "getmembers", lambda *args, **kwargs: listings.append(1) or members(*args, **kwargs))
    names = responses.method_names_from_class(Actions)
    assert "first_action" in names and "call_action" in names
    assert responses.method_names_from_class(Actions) == names and len(listings) == 1


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with MotoServer(tmp_path_factory.mktemp("moto")) as server:
        yield server


def _signed_form_post(emulator: MotoServer, credentials: Credentials, body: bytes) -> tuple[int, str]:
    request = AWSRequest(
        method="POST",
        url=f"{emulator.endpoint_url}/",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(credentials, "sts", emulator.region).add_auth(request)
    prepared = request.prepare()
    sent = urllib.request.Request(prepared.url, data=prepared.body, headers=dict(prepared.headers), method="POST")
    try:
        with urllib.request.urlopen(sent, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def test_a_signature_is_checked_over_the_body_as_sent(emulator):
    keys = emulator.create_organization([]).get_credentials().get_frozen_credentials()
    emulator.set_enforcement(True)
    try:
        # "~" percent-encoded: valid form encoding, which moto's re-encoding of the parsed form would not reproduce
        body = b"Action=GetCallerIdentity&Version=2011-06-15&Note=%7Eteam"
        status, answer = _signed_form_post(emulator, keys, body)
        assert status == 200 and ":user/sso-broker-provisioner" in answer, answer
        forged = Credentials(keys.access_key, "not-the-secret")
        status, answer = _signed_form_post(emulator, forged, body)
        assert status == 403 and "SignatureDoesNotMatch" in answer, answer
    finally:
        emulator.set_enforcement(False)


def test_an_unsigned_request_is_refused_as_aws_refuses_it_not_with_a_500(emulator):
    emulator.set_enforcement(True)
    try:
        body = b"Action=GetCallerIdentity&Version=2011-06-15"
        sent = urllib.request.Request(
            emulator.endpoint_url,
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(sent, timeout=10)
        answer = refused.value.read().decode()
        assert refused.value.code == 403 and "<Code>MissingAuthenticationToken</Code>" in answer, answer
    finally:
        emulator.set_enforcement(False)


def test_a_refusal_to_a_json_protocol_service_is_json_with_aws_s_code(tmp_path):
    """moto answered every refusal in the query protocol's XML: DynamoDB's client read no code in it."""
    with MotoServer(tmp_path) as emulator:  # an organization of its own
        keys = emulator.create_organization([]).get_credentials().get_frozen_credentials()  # may only assume a role
        _refused_as_json_protocol_services_refuse(emulator, keys)


def _refused_as_json_protocol_services_refuse(emulator: MotoServer, keys) -> None:
    def dynamodb(secret: str):
        return boto3.client(
            "dynamodb",
            endpoint_url=emulator.endpoint_url,
            region_name=emulator.region,
            aws_access_key_id=keys.access_key,
            aws_secret_access_key=secret,
        )

    emulator.set_enforcement(True)
    try:
        for secret, code in (
            (keys.secret_key, "AccessDeniedException"),
            ("not-the-secret", "InvalidSignatureException"),
        ):
            with pytest.raises(ClientError) as refused:
                dynamodb(secret).list_tables()
            error = refused.value.response
            assert error["ResponseMetadata"]["HTTPStatusCode"] == 403 and error["Error"]["Code"] == code, error
            assert "<" not in error["Error"]["Message"]
        sts = boto3.client(  # the query protocol keeps its XML and its own codes
            "sts",
            endpoint_url=emulator.endpoint_url,
            region_name=emulator.region,
            aws_access_key_id=keys.access_key,
            aws_secret_access_key="not-the-secret",
        )
        with pytest.raises(ClientError) as refused:
            sts.get_caller_identity()
        assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    finally:
        emulator.set_enforcement(False)
