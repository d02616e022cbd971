"""Against a real moto server with IAM enforcement on: provisioning converges, issued credentials carry
exactly their permission set's access, and STS failures surface as the issuer's own error types."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import boto3
import pytest
from botocore.exceptions import ClientError

from broker.aws.accounts import AccountSessions, broker_session
from broker.aws.assertion import idp_metadata_xml
from broker.aws.provisioning import Change, provision, trust_policy
from broker.aws.sts import StsCredentialIssuer
from broker.core.entitlements import Entitlement, check_entitlement
from broker.core.naming import SSO_ROLE_PATH, provider_arn, role_arn
from broker.errors import StsRefused, StsUnavailable
from devstack.processes import free_port
from devstack.stack import write_keys
from tests.broker.conftest import BROKER_ENTITY_ID

SANDBOX, PRODUCTION = "111111111111", "222222222222"
BUCKET = "employee-directory-photos-{}"


@pytest.fixture(scope="module")
def metadata(signing_identity):
    return idp_metadata_xml(BROKER_ENTITY_ID, signing_identity, "https://broker.example.test/saml/sso")


@pytest.fixture(scope="module")
def management(moto_server, access):
    """An emulated organization (its management account's session), then IAM enforcement on for everything
    that follows."""
    management = moto_server.create_organization(list(access.accounts))
    moto_server.set_enforcement(True)
    yield management
    moto_server.set_enforcement(False)


@pytest.fixture(scope="module")
def sessions(management, moto_server, access):
    return AccountSessions(management, access.region, endpoint_url=moto_server.endpoint_url)


@pytest.fixture(scope="module")
def first_run(sessions, access, metadata):
    return provision(access, metadata, sessions.client)


@pytest.fixture(scope="module")
def issuer(moto_server, access, signing_identity, sessions, first_run):
    return StsCredentialIssuer(
        moto_server.endpoint_url, access.region, signing_identity, BROKER_ENTITY_ID, caller_sessions=sessions.session
    )


def as_person(credentials, moto_server, service):
    return boto3.client(
        service,
        endpoint_url=moto_server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
    )


def denied(call) -> bool:
    try:
        call()
    except ClientError as error:
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 403, error
        return True
    return False


def test_first_run_creates_everything_and_a_second_run_changes_nothing(first_run, sessions, access, metadata):
    created = {str(change) for change in first_run}
    assert f"{SANDBOX}: created SAML provider ExampleCorpSSOBroker" in created
    assert f"{PRODUCTION}: created table Employees" in created
    roles = {c.resource for c in first_run if c.action == "created" and c.resource.startswith("role ")}
    assert len(roles) == 6  # engineering 2 + aws-admins 2 + security 2
    assert provision(access, metadata, sessions.client) == []


def test_roles_trust_only_the_brokers_provider_for_saml_sign_in(first_run, sessions, person, access):
    entitlement = check_entitlement(person("bob"), access, PRODUCTION, "EmployeeDirectoryReadOnly")
    role = sessions.client(PRODUCTION, "iam").get_role(RoleName=entitlement.role_name)["Role"]
    assert role["Path"] == SSO_ROLE_PATH and role["Arn"] == entitlement.role_arn
    assert role["MaxSessionDuration"] == 4 * 3600
    assert role["AssumeRolePolicyDocument"] == trust_policy(entitlement.provider_arn)
    statement = role["AssumeRolePolicyDocument"]["Statement"][0]
    assert statement["Condition"] == {"StringEquals": {"SAML:aud": "https://signin.aws.amazon.com/saml"}}
    assert set(statement["Action"]) == {"sts:AssumeRoleWithSAML", "sts:TagSession", "sts:SetSourceIdentity"}


def test_changed_policies_are_updated_and_changed_back(first_run, sessions, access, metadata):
    read_only = access.permission_sets["EmployeeDirectoryReadOnly"]
    narrower = json.loads(read_only.inline_policy_template)
    narrower["Statement"] = narrower["Statement"][:2]
    changed = dataclasses.replace(
        access,
        permission_sets={
            **access.permission_sets,
            read_only.name: dataclasses.replace(
                read_only,
                inline_policy_template=json.dumps(narrower),
                managed_policy_arns=("arn:aws:iam::aws:policy/ReadOnlyAccess",),
            ),
        },
    )
    changes = provision(changed, metadata, sessions.client)
    assert {(c.account_id, c.action, c.resource.split(" ")[0]) for c in changes} == {
        (PRODUCTION, "updated", "inline"),
        (PRODUCTION, "attached", "arn:aws:iam::aws:policy/ReadOnlyAccess"),
    }
    name = next(c.resource.split()[-1] for c in changes if c.action == "updated")
    deployed = sessions.client(PRODUCTION, "iam").get_role_policy(RoleName=name, PolicyName="AwsSSOInlinePolicy")
    assert len(deployed["PolicyDocument"]["Statement"]) == 2

    restored = provision(access, metadata, sessions.client)
    assert {c.action for c in restored} == {"updated", "detached"}
    assert provision(access, metadata, sessions.client) == []


def test_unassigned_permission_sets_lose_their_roles_and_foreign_roles_survive(first_run, sessions, access, metadata):
    iam = sessions.client(SANDBOX, "iam")
    # A role of a real IAM Identity Center in the same account, under the same path, not ours.
    iam.create_role(
        Path=SSO_ROLE_PATH,
        RoleName="AWSReservedSSO_Billing_0000000000000000",
        AssumeRolePolicyDocument=json.dumps(trust_policy(provider_arn(SANDBOX, "AWSSSO"))),
    )
    without_security = dataclasses.replace(
        access, assignments=tuple(a for a in access.assignments if a.group != "security")
    )
    changes = provision(without_security, metadata, sessions.client)
    assert [(c.account_id, c.action, c.resource.split("_")[1]) for c in changes] == [
        (SANDBOX, "deleted", "SecurityAudit"),
        (PRODUCTION, "deleted", "SecurityAudit"),
    ]
    assert iam.get_role(RoleName="AWSReservedSSO_Billing_0000000000000000")
    assert {c.action for c in provision(access, metadata, sessions.client)} <= {"created", "attached"}


def test_read_only_credentials_read_the_directory_and_cannot_write(issuer, moto_server, access, person):
    bob = person("bob")
    entitlement = check_entitlement(bob, access, PRODUCTION, "EmployeeDirectoryReadOnly")
    started = datetime.now(UTC)
    credentials = issuer.issue(bob, entitlement)

    caller = as_person(credentials, moto_server, "sts").get_caller_identity()
    assert caller["Account"] == PRODUCTION
    assert f"assumed-role/{entitlement.role_name}/bob@example.com" in caller["Arn"]
    assert caller["Arn"] == credentials.assumed_role_arn
    assert credentials.expiration - started == pytest.approx(timedelta(hours=4), abs=timedelta(minutes=1))
    assert credentials.secret_access_key not in repr(credentials)
    assert credentials.session_token not in repr(credentials)

    s3 = as_person(credentials, moto_server, "s3")
    assert s3.get_object(Bucket=BUCKET.format(PRODUCTION), Key="photos/bob.svg")["Body"].read().startswith(b"<?xml")
    assert denied(lambda: s3.put_object(Bucket=BUCKET.format(PRODUCTION), Key="photos/eve.svg", Body=b"x"))
    dynamodb = as_person(credentials, moto_server, "dynamodb")
    item = dynamodb.get_item(TableName="Employees", Key={"username": {"S": "bob"}})["Item"]
    assert item["department"] == {"S": "Engineering"}
    assert denied(lambda: dynamodb.put_item(TableName="Employees", Item={"username": {"S": "eve"}}))
    assert denied(lambda: as_person(credentials, moto_server, "iam").list_roles())


def test_developer_credentials_write_the_directory(issuer, moto_server, access, person):
    bob = person("bob")
    credentials = issuer.issue(bob, check_entitlement(bob, access, SANDBOX, "EmployeeDirectoryDeveloper"))
    assert "AWSReservedSSO_EmployeeDirectoryDeveloper_" in credentials.assumed_role_arn
    s3 = as_person(credentials, moto_server, "s3")
    s3.put_object(Bucket=BUCKET.format(SANDBOX), Key="photos/erin.svg", Body=b"<svg/>")
    assert s3.get_object(Bucket=BUCKET.format(SANDBOX), Key="photos/erin.svg")["Body"].read() == b"<svg/>"
    dynamodb = as_person(credentials, moto_server, "dynamodb")
    dynamodb.put_item(TableName="Employees", Item={"username": {"S": "erin"}, "department": {"S": "QA"}})
    assert dynamodb.get_item(TableName="Employees", Key={"username": {"S": "erin"}})["Item"]["department"] == {
        "S": "QA"
    }
    assert denied(lambda: as_person(credentials, moto_server, "iam").list_roles())


def test_security_audit_with_mfa_reaches_its_role(issuer, access, person):
    auditor = person("dana", groups=("security",), mfa=True)
    credentials = issuer.issue(auditor, check_entitlement(auditor, access, SANDBOX, "SecurityAudit"))
    assert "/AWSReservedSSO_SecurityAudit_" in credentials.assumed_role_arn
    assert credentials.assumed_role_arn.endswith("/dana@example.com")


def test_emulator_still_checks_dynamodb_against_resource_star(issuer, sessions, moto_server, access, person):
    """Canary for the Allow-"*"-plus-Deny pattern in access.yaml: if moto starts matching table ARNs,
    this fails and the directory policies can become plain table-scoped Allows."""
    iam = sessions.client(SANDBOX, "iam")
    name = "AWSReservedSSO_Canary_0000000000000000"
    iam.create_role(
        Path=SSO_ROLE_PATH,
        RoleName=name,
        AssumeRolePolicyDocument=json.dumps(trust_policy(provider_arn(SANDBOX, "ExampleCorpSSOBroker"))),
    )
    iam.put_role_policy(
        RoleName=name,
        PolicyName="TableOnly",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "dynamodb:GetItem",
                        "Resource": f"arn:aws:dynamodb:us-east-1:{SANDBOX}:table/Employees",
                    }
                ],
            }
        ),
    )
    canary = Entitlement(
        SANDBOX,
        "example-sandbox",
        "Canary",
        name,
        role_arn(SANDBOX, name),
        provider_arn(SANDBOX, "ExampleCorpSSOBroker"),
        3600,
        False,
    )
    try:
        credentials = issuer.issue(person("bob"), canary)
        dynamodb = as_person(credentials, moto_server, "dynamodb")
        assert denied(lambda: dynamodb.get_item(TableName="Employees", Key={"username": {"S": "bob"}}))
    finally:
        iam.delete_role_policy(RoleName=name, PolicyName="TableOnly")
        iam.delete_role(RoleName=name)


def test_sts_down_is_reported_as_unavailable_quickly(access, person, signing_identity):
    bob = person("bob")
    entitlement = check_entitlement(bob, access, SANDBOX, "EmployeeDirectoryDeveloper")
    nothing_listens = f"http://127.0.0.1:{free_port()}"
    issuer = StsCredentialIssuer(nothing_listens, "us-east-1", signing_identity, BROKER_ENTITY_ID)
    started = time.monotonic()
    with pytest.raises(StsUnavailable) as failure:
        issuer.issue(bob, entitlement)
    assert time.monotonic() - started < 5
    assert nothing_listens in str(failure.value)
    assert failure.value.__cause__ is None and failure.value.__suppress_context__


def test_an_unreachable_way_into_the_roles_account_is_reported_as_unavailable(access, person, signing_identity):
    """The first call in an account assumes the broker's role there: when that cannot reach AWS either, the
    person gets the same "unavailable" answer as for STS itself, not an error page."""
    bob = person("bob")
    entitlement = check_entitlement(bob, access, SANDBOX, "EmployeeDirectoryDeveloper")
    nothing_listens = f"http://127.0.0.1:{free_port()}"
    keys = boto3.Session(aws_access_key_id="AKIAEXAMPLE000000000", aws_secret_access_key="x", region_name="us-east-1")
    accounts = AccountSessions(keys, "us-east-1", endpoint_url=nothing_listens)
    issuer = StsCredentialIssuer(
        nothing_listens, "us-east-1", signing_identity, BROKER_ENTITY_ID, caller_sessions=accounts.signed_session
    )
    with pytest.raises(StsUnavailable):
        issuer.issue(bob, entitlement)


def test_sts_error_answer_is_reported_as_refused_without_the_assertion(
    moto_server, access, person, signing_identity, first_run
):
    bob = person("bob")
    entitlement = check_entitlement(bob, access, SANDBOX, "EmployeeDirectoryDeveloper")
    unknown_caller = boto3.Session(
        aws_access_key_id="AKIAUNKNOWNCALLER000", aws_secret_access_key="wrong", region_name="us-east-1"
    )
    issuer = StsCredentialIssuer(
        moto_server.endpoint_url,
        "us-east-1",
        signing_identity,
        BROKER_ENTITY_ID,
        caller_sessions=lambda account_id: unknown_caller,
    )
    with pytest.raises(StsRefused) as refusal:
        issuer.issue(bob, entitlement)
    assert refusal.value.code == "InvalidClientTokenId"
    message = str(refusal.value)
    assert "PHNhbWxwOlJlc3BvbnNl" not in message and "samlp" not in message  # base64 and XML of the assertion
    assert refusal.value.__cause__ is None and refusal.value.__suppress_context__


@pytest.fixture
def no_aws_keys_around(monkeypatch, tmp_path):
    """botocore finds no credentials but the ones a test names: no keys in the environment, no ~/.aws files, no
    instance metadata."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def issuer_keyed_by(keys_file, moto_server, access, signing_identity):
    """The broker's AccountSessions with its keys in `keys_file` (looked up at the first call), and an issuer
    signing with them."""
    accounts = AccountSessions(lambda: broker_session(keys_file), access.region, moto_server.endpoint_url)
    issuer = StsCredentialIssuer(
        moto_server.endpoint_url,
        access.region,
        signing_identity,
        BROKER_ENTITY_ID,
        caller_sessions=accounts.signed_session,
    )
    return accounts, issuer


def test_the_brokers_keys_are_looked_up_at_its_first_call_not_when_it_starts(
    moto_server, access, person, signing_identity, management, first_run, tmp_path, no_aws_keys_around
):
    """A portal may start before its keys exist: the keys file written after the issuer was made is the one its
    first call signs with (IAM enforcement is on: unsigned, the emulator would refuse)."""
    keys_file = tmp_path / "aws-credentials"
    _, issuer = issuer_keyed_by(keys_file, moto_server, access, signing_identity)
    keys = management.get_credentials()
    write_keys(keys_file, {"AWS_ACCESS_KEY_ID": keys.access_key, "AWS_SECRET_ACCESS_KEY": keys.secret_key})
    bob = person("bob")
    credentials = issuer.issue(bob, check_entitlement(bob, access, SANDBOX, "EmployeeDirectoryDeveloper"))
    assert credentials.access_key_id.startswith("ASIA")


def test_without_keys_of_its_own_the_broker_calls_sts_unsigned(
    moto_server, access, person, signing_identity, first_run, tmp_path, no_aws_keys_around
):
    accounts, issuer = issuer_keyed_by(tmp_path / "never-written", moto_server, access, signing_identity)
    assert accounts.signed_session(SANDBOX) is None and not accounts.has_credentials()
    bob = person("bob")
    with pytest.raises(StsRefused) as refusal:  # the emulator, enforcing IAM, takes no unsigned call (real STS does)
        issuer.issue(bob, check_entitlement(bob, access, SANDBOX, "EmployeeDirectoryDeveloper"))
    assert refusal.value.code == "MissingAuthenticationToken"


def test_change_reads_as_one_line():
    assert str(Change(SANDBOX, "created", "bucket b")) == f"{SANDBOX}: created bucket b"


# -- the way to AWS, as "How did I get here?" shows it ------------------------------------------------


def _minted(monkeypatch) -> list[bytes]:
    """Every SAML Response the issuer builds, kept by the test (to know its signature value)."""
    from broker.aws import sts as sts_module

    minted: list[bytes] = []
    build = sts_module.build_saml_response

    def keep(*args, **kwargs) -> bytes:
        minted.append(build(*args, **kwargs))
        return minted[-1]

    monkeypatch.setattr(sts_module, "build_saml_response", keep)
    return minted


def test_the_way_to_aws_is_recorded_decoded_and_without_a_secret(issuer, access, person, sessions, monkeypatch):
    from lxml import etree

    from broker.aws.evidence import assertion_section, policies_section
    from broker.core.evidence import recording
    from broker.core.explain import issuance_story, shown_issuance

    minted = _minted(monkeypatch)
    bob = person("bob")
    with recording() as record:
        entitlement = check_entitlement(bob, access, SANDBOX, "EmployeeDirectoryDeveloper")
        credentials = issuer.issue(bob, entitlement)
    story = issuance_story(
        record,
        access=access,
        channel="portal",
        account_id=SANDBOX,
        permission_set="EmployeeDirectoryDeveloper",
        role_name=entitlement.role_name,
        role_arn=entitlement.role_arn,
        outcome="issued",
    )
    sections = {section.key: section for section in story.sections}
    assert list(sections) == ["entitlement", "request", "answer"]  # the assertion's is decoded when shown
    decoded = assertion_section(story.request_parameters["SAMLAssertion"])
    page = shown_issuance(story, time.time(), assertion=decoded)
    assert [section["key"] for section in page["sections"]] == ["entitlement", "assertion", "request", "answer"]
    assertion = {fact["label"]: fact["value"] for fact in page["sections"][1]["facts"]}
    assert assertion["Role"] == f"{entitlement.role_arn},{entitlement.provider_arn}"
    assert assertion["RoleSessionName"] == assertion["SourceIdentity"] == "bob@example.com"
    assert assertion["SessionDuration"] == str(entitlement.session_duration)
    assert assertion["PrincipalTag:username"] == "bob@example.com" and assertion["Audience"].endswith("/saml")
    request = {fact.label: fact.value for fact in sections["request"].facts}
    assert request["RoleArn"] == entitlement.role_arn and request["PrincipalArn"] == entitlement.provider_arn
    answer = {fact.label: fact.value for fact in sections["answer"].facts}
    assert answer["AssumedRoleUser Arn"] == credentials.assumed_role_arn
    assert [(c.name, c.outcome) for c in sections["answer"].checks] == [("STS accepted the assertion", "passed")]

    [xml] = minted
    signature = "".join(etree.fromstring(xml).findtext(".//{http://www.w3.org/2000/09/xmldsig#}SignatureValue").split())
    stored = json.dumps(story.to_record())
    for secret in (signature, signature[:40], credentials.secret_access_key, credentials.session_token):
        assert secret not in stored and secret not in json.dumps(page)
    assert "<samlp:Response" not in stored  # kept once, as the request's base64, not decoded as well
    [document] = page["sections"][1]["documents"]
    assert document["text"].startswith("<samlp:Response") and "[signature value withheld]" in document["text"]
    assert assertion["NotOnOrAfter"] == datetime.fromtimestamp(story.assertion_expires, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert credentials.access_key_id not in stored and credentials.access_key_id[-4:] in answer["AccessKeyId"]
    # The request body: withheld while the assertion is a bearer credential, then shown, signature withheld.
    assert shown_issuance(story, time.time())["request_body"] is None
    later = shown_issuance(story, story.assertion_expires + 1)["request_body"]
    assert later.startswith("Action=AssumeRoleWithSAML") and "RoleArn=" in later and signature[:40] not in later
    # exactly the request sent, but for the signature value: the parameters kept are urlencoded when shown
    shown = {name: values[0] for name, values in parse_qs(later).items()}
    assert shown == {
        "Action": "AssumeRoleWithSAML",
        "Version": "2011-06-15",
        "RoleArn": entitlement.role_arn,
        "PrincipalArn": entitlement.provider_arn,
        "SAMLAssertion": shown["SAMLAssertion"],
        "DurationSeconds": str(entitlement.session_duration),
    }
    sent = etree.fromstring(xml)
    for value in sent.iter("{http://www.w3.org/2000/09/xmldsig#}SignatureValue"):
        value.text = "[signature value withheld]"
    assert base64.b64decode(shown["SAMLAssertion"]) == etree.tostring(sent)
    assert "request_body" not in json.loads(stored) or not json.loads(stored)["request_body"]

    policies = policies_section(
        lambda account_id: sessions.client(account_id, "iam"),
        access,
        account_id=SANDBOX,
        permission_set="EmployeeDirectoryDeveloper",
        role_name=entitlement.role_name,
        role_arn=entitlement.role_arn,
        trust={},
    )
    trust = json.loads(policies.documents[0].text)
    assert trust == trust_policy(entitlement.provider_arn)  # as IAM has it, the provider the only principal
    assert any(document.label.startswith("Inline permission policy") for document in policies.documents)


def test_an_sts_refusal_is_recorded_where_sts_answered(moto_server, access, person, signing_identity, first_run):
    from broker.core.evidence import recording

    unknown_caller = boto3.Session(
        aws_access_key_id="AKIAUNKNOWNCALLER000", aws_secret_access_key="wrong", region_name="us-east-1"
    )
    issuer = StsCredentialIssuer(
        moto_server.endpoint_url,
        "us-east-1",
        signing_identity,
        BROKER_ENTITY_ID,
        caller_sessions=lambda account_id: unknown_caller,
    )
    bob = person("bob")
    with recording() as record, pytest.raises(StsRefused):
        issuer.issue(bob, check_entitlement(bob, access, SANDBOX, "EmployeeDirectoryDeveloper"))
    [answer] = record.sections("answer")
    [check] = answer.checks
    assert check.outcome == "failed" and check.detail.startswith("InvalidClientTokenId")


@pytest.mark.parametrize(
    "kept",
    [
        "not base64!",
        base64.b64encode(b"<unclosed").decode(),
        base64.b64encode(b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>').decode(),
    ],
)
def test_a_kept_response_that_does_not_decode_shows_no_assertion_section(kept):
    """The Response is read back from the state store when a story is shown: what does not decode shows nothing,
    and an entity in it is never resolved (no file or network read for a page)."""
    from broker.aws.evidence import assertion_section

    section = assertion_section(kept)
    assert section is None or "root:" not in json.dumps(section.to_record())
