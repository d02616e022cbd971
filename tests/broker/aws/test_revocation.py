"""Credentials already issued, revoked in AWS (broker/aws/revocation.py), against the AWS emulator with IAM
enforcement on: the deny statements the broker puts on a role, what they deny (the revoked person's sessions
issued before the revocation) and what they leave alone (others' sessions, and sessions issued after), and
their removal once every session they could deny has expired.

moto alone would deny every session of the role (it treats `DateLessThan` as true and `StringEquals` without a
context value as true); the emulator wrapper evaluates `aws:TokenIssueTime` and `aws:SourceIdentity` in Deny
statements (devstack/aws_emulator.py), which is what makes these tests meaningful. What only real AWS can
confirm is listed in the README ("Provisioning and revocation")."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime

import boto3
import pytest
from botocore.exceptions import ClientError

from broker.aws.accounts import AccountSessions
from broker.aws.assertion import idp_metadata_xml
from broker.aws.provisioning import REVOCATION_POLICY_NAME as POLICY_NAME
from broker.aws.provisioning import provision
from broker.aws.revocation import (
    POLICY_BUDGET,
    SETTLE_SECONDS,
    AwsRevoker,
    cutoff_of,
    iso,
    merged,
    person_statement,
    unexpired,
)
from broker.aws.sts import StsCredentialIssuer
from broker.core.entitlements import check_entitlement
from broker.core.revocation import Revocation
from devstack.aws_emulator import MotoServer
from sso_common.store import AuditQuery
from sso_common.store.memory import MemoryAuditLog, MemoryChangeLog, MemoryStateStore
from tests.broker.conftest import BROKER_ENTITY_ID

PRODUCTION = "222222222222"
ROLE_SET = "EmployeeDirectoryReadOnly"
BUCKET = f"employee-directory-photos-{PRODUCTION}"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with MotoServer(tmp_path_factory.mktemp("moto-revocation")) as server:
        yield server


@pytest.fixture(scope="module")
def sessions(emulator, access, signing_identity):
    management = emulator.create_organization(list(access.accounts))
    accounts = AccountSessions(management, access.region, endpoint_url=emulator.endpoint_url)
    provision(
        access, idp_metadata_xml(BROKER_ENTITY_ID, signing_identity, "https://broker.example.test/"), accounts.client
    )
    emulator.set_enforcement(True)
    return accounts


@pytest.fixture(scope="module")
def issuer(emulator, access, signing_identity, sessions):
    return StsCredentialIssuer(
        emulator.endpoint_url, access.region, signing_identity, BROKER_ENTITY_ID, caller_sessions=sessions.session
    )


@pytest.fixture
def world(issuer, sessions, access, person, emulator):
    """Issues credentials as the portal would (with the audit record the revoker reads), and the revoker."""
    audit, outbox = MemoryAuditLog(), MemoryChangeLog()
    revoker = AwsRevoker(access, sessions.client, outbox, audit, MemoryStateStore(), clock_margin=0)

    def issue(username: str):
        identity = person(username, groups=("engineering",))
        entitlement = check_entitlement(identity, access, PRODUCTION, ROLE_SET)
        credentials = issuer.issue(identity, entitlement)
        audit.append(
            {
                "type": "credentials",
                "outcome": "success",
                "subject": identity.subject,
                "role_arn": entitlement.role_arn,
                "source_identity": identity.email,
                "expiration": credentials.expiration.isoformat(),
            }
        )
        return credentials, entitlement

    yield issue, revoker, audit, outbox
    for name in role_names(access):  # each test starts without deny statements
        try:
            sessions.client(PRODUCTION, "iam").delete_role_policy(RoleName=name, PolicyName=POLICY_NAME)
        except ClientError:
            pass


def role_names(access):
    from broker.core.naming import role_name

    return [
        role_name(access.identity_provider_name, PRODUCTION, ps.name)
        for ps in access.assigned_permission_sets(PRODUCTION)
    ]


def s3_as(credentials, emulator):
    return boto3.client(
        "s3",
        endpoint_url=emulator.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
    )


def works(credentials, emulator) -> bool:
    try:
        s3_as(credentials, emulator).list_objects_v2(Bucket=BUCKET)
    except ClientError as error:
        assert error.response["Error"]["Code"] == "AccessDenied", error
        return False
    return True


def wait_past(epoch: int) -> None:
    """AWS's aws:TokenIssueTime has whole seconds: a session issued in the cutoff's second is before it. Wait
    (at most a second) until a new session is issued after it."""
    deadline = time.monotonic() + 2.0
    while time.time() < epoch:
        assert time.monotonic() < deadline
        time.sleep(min(0.05, max(0.0, epoch - time.time())))


def test_a_revoked_persons_older_sessions_are_denied_and_nothing_else(world, emulator, sessions):
    issue, revoker, audit, _ = world
    bob_old, entitlement = issue("bob")
    alice_old, _ = issue("alice")
    assert works(bob_old, emulator) and works(alice_old, emulator)

    at = time.time()
    denied = revoker.apply(Revocation("corp", "subject-bob", "bob@example.com", at, "test"))

    assert [(d.role_name, d.source_identity) for d in denied] == [(entitlement.role_name, "bob@example.com")]
    assert not works(bob_old, emulator)  # denied everything: S3 here, STS, anything
    assert works(alice_old, emulator)  # another person's session on the same role
    wait_past(cutoff_of(at, 0))
    bob_new, _ = issue("bob")  # re-enabled (or never disabled): a session issued after the revocation works
    assert works(bob_new, emulator)
    document = sessions.client(PRODUCTION, "iam").get_role_policy(
        RoleName=entitlement.role_name, PolicyName=POLICY_NAME
    )
    [statement] = document["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny" and statement["Action"] == "*" and statement["Resource"] == "*"
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceIdentity": "bob@example.com"},
        "DateLessThan": {"aws:TokenIssueTime": iso(math.ceil(at))},
    }
    assert statement["Sid"].endswith(f"Until{math.ceil(at) + 4 * 3600}")  # the role's longest session
    [event] = audit.query(AuditQuery(event_type="revocation"))
    assert event["actor"] == "aws" and event["roles"] == [entitlement.role_arn]


def test_provisioning_again_keeps_the_deny_statements(world, emulator, sessions, access, signing_identity):
    """`broker provision` deleted every inline policy but the permission set's own: revoked sessions worked again."""
    issue, revoker, _, _ = world
    bob_old, entitlement = issue("bob")
    revoker.apply(Revocation("corp", "subject-bob", "bob@example.com", time.time(), "test"))
    assert not works(bob_old, emulator)
    metadata = idp_metadata_xml(BROKER_ENTITY_ID, signing_identity, "https://broker.example.test/")
    changes = provision(access, metadata, sessions.client)
    assert not any(POLICY_NAME in str(change) for change in changes), changes
    assert not works(bob_old, emulator)
    iam = sessions.client(PRODUCTION, "iam")
    assert POLICY_NAME in iam.list_role_policies(RoleName=entitlement.role_name)["PolicyNames"]


def test_revoking_again_keeps_one_statement_per_person_with_the_later_cutoff(world, sessions):
    issue, revoker, _, _ = world
    _, entitlement = issue("bob")
    now = time.time()
    revoker.apply(Revocation("corp", "subject-bob", "bob@example.com", now + 100, "first"))
    revoker.apply(Revocation("corp", "subject-bob", "bob@example.com", now, "an older one, applied late"))
    document = sessions.client(PRODUCTION, "iam").get_role_policy(
        RoleName=entitlement.role_name, PolicyName=POLICY_NAME
    )
    [statement] = document["PolicyDocument"]["Statement"]
    assert statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"] == iso(math.ceil(now + 100))


def test_a_person_with_no_credentials_needs_nothing_in_aws(world):
    _, revoker, audit, _ = world
    assert revoker.apply(Revocation("corp", "subject-nobody", "nobody@example.com", time.time(), "test")) == []
    assert "nothing to deny" in audit.query(AuditQuery(event_type="revocation"))[0]["reason"]


def test_the_sweep_removes_statements_once_every_session_they_deny_has_expired(world, sessions, access):
    issue, revoker, _, _ = world
    _, entitlement = issue("bob")
    issue("alice")
    at = time.time()
    revoker.apply(Revocation("corp", "subject-bob", "bob@example.com", at, "test"))
    revoker.apply(Revocation("corp", "subject-alice", "alice@example.com", at + 10, "test"))
    iam = sessions.client(PRODUCTION, "iam")
    assert revoker.sweep(at + 60) == 0  # both still needed
    assert revoker.sweep(math.ceil(at) + 4 * 3600 + 1) == 1  # bob's expired, alice's (10 s later) not yet
    [left] = iam.get_role_policy(RoleName=entitlement.role_name, PolicyName=POLICY_NAME)["PolicyDocument"]["Statement"]
    assert left["Condition"]["StringEquals"]["aws:SourceIdentity"] == "alice@example.com"
    assert revoker.sweep(at + 10 * 3600) == 1
    with pytest.raises(ClientError, match="NoSuchEntity"):
        iam.get_role_policy(RoleName=entitlement.role_name, PolicyName=POLICY_NAME)


def test_the_worker_carries_out_the_outbox_once_and_sweeps_when_due(world, sessions):
    issue, revoker, _, outbox = world
    credentials, entitlement = issue("bob")
    outbox.append(Revocation("corp", "subject-bob", "bob@example.com", time.time(), "test").to_record())
    calls = []
    original = revoker.apply
    revoker.apply = lambda revocation, **options: calls.append(revocation) or original(revocation, **options)
    revoker.step()
    revoker.step()  # the cursor moved: not applied twice
    assert len(calls) == 1
    assert sessions.client(PRODUCTION, "iam").get_role_policy(RoleName=entitlement.role_name, PolicyName=POLICY_NAME)


def test_credentials_audited_after_the_first_pass_are_denied_once_the_revocation_settles(
    world, emulator, sessions, access
):
    """An issuance under way at the revocation: STS minted before the cutoff, but the audit record came after
    the worker's first look. The settled pass denies them, and says so in the audit trail."""
    issue, _, audit, outbox = world
    now = [time.time()]
    revoker = AwsRevoker(
        access, sessions.client, outbox, audit, MemoryStateStore(), clock_margin=0, clock=lambda: now[0]
    )
    at = time.time() + 2  # the cutoff after the mint below
    outbox.append(Revocation("corp", "subject-bob", "bob@example.com", at, "test").to_record())
    revoker.step()  # the first look: nothing audited yet
    assert audit.query(AuditQuery(event_type="revocation"))[0]["reason"].startswith("no credentials")
    credentials, entitlement = issue("bob")  # minted before the cutoff, audited after the first look
    revoker.step()
    assert works(credentials, emulator)  # not settled yet
    now[0] = at + SETTLE_SECONDS
    revoker.step()
    assert not works(credentials, emulator)
    latest = audit.query(AuditQuery(event_type="revocation"))[0]
    assert latest["roles"] == [entitlement.role_arn] and "audited after the revocation" in latest["reason"]


def test_credentials_audited_just_after_the_revocation_are_denied_within_its_margin(world, emulator, sessions, access):
    """An issuance whose guard check passed just before the revocation is audited just after it: its session is
    before the cutoff (the revocation plus the clock margin), so its role is denied too."""
    issue, _, audit, outbox = world
    revoker = AwsRevoker(access, sessions.client, outbox, audit, MemoryStateStore(), clock_margin=3)
    revocation = Revocation("corp", "subject-bob", "bob@example.com", time.time(), "test")
    credentials, entitlement = issue("bob")
    assert [role.role_name for role in revoker.apply(revocation)] == [entitlement.role_name]
    assert not works(credentials, emulator)


def test_the_settled_pass_writes_and_audits_nothing_the_first_pass_did(world, sessions, access, monkeypatch):
    issue, _, audit, outbox = world
    issue("bob")
    now = [time.time()]
    revoker = AwsRevoker(
        access, sessions.client, outbox, audit, MemoryStateStore(), clock_margin=0, clock=lambda: now[0]
    )
    outbox.append(Revocation("corp", "subject-bob", "bob@example.com", now[0], "test").to_record())
    revoker.step()
    writes = []
    monkeypatch.setattr(AwsRevoker, "_write", staticmethod(lambda iam, name, statements: writes.append(name)))
    now[0] += SETTLE_SECONDS
    revoker.step()
    revoker.step()  # its cursor moved too
    assert writes == [] and len(audit.query(AuditQuery(event_type="revocation"))) == 1


def test_the_settled_pass_of_a_broker_from_before_it_starts_where_the_first_pass_stands(world, sessions, access):
    issue, _, audit, outbox = world
    issue("bob")
    state = MemoryStateStore()
    outbox.append(Revocation("corp", "subject-bob", "bob@example.com", time.time() - 3600, "long ago").to_record())
    state.put("revoker_cursor", "aws", {"position": 1}, 60)  # applied by a broker without the settled pass
    applied = []
    revoker = AwsRevoker(access, sessions.client, outbox, audit, state, clock_margin=0)
    revoker.apply = lambda revocation, **options: applied.append(revocation)
    revoker.step()
    assert applied == []


def test_a_role_wide_revocation_denies_every_older_session_of_the_role(world, emulator, sessions):
    """When the statements would outgrow the policy budget, the role gets IAM's own "revoke active sessions"."""
    issue, revoker, _, _ = world
    bob, entitlement = issue("bob")
    alice, _ = issue("alice")
    crowd = [person_statement(f"user{n}@example.com", cutoff_of(time.time(), 0), 2_000_000_000) for n in range(60)]
    iam = sessions.client(PRODUCTION, "iam")
    iam.put_role_policy(
        RoleName=entitlement.role_name,
        PolicyName=POLICY_NAME,
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": crowd[:25]}),
    )
    at = time.time()
    revoker.apply(Revocation("corp", "subject-bob", "bob@example.com", at, "test"))
    [statement] = iam.get_role_policy(RoleName=entitlement.role_name, PolicyName=POLICY_NAME)["PolicyDocument"][
        "Statement"
    ]
    assert statement["Sid"].startswith("BrokerRevokeAllUntil") and "StringEquals" not in statement["Condition"]
    assert not works(bob, emulator) and not works(alice, emulator)
    wait_past(cutoff_of(at, 0))
    assert works(issue("alice")[0], emulator)
    writes = []
    revoker._write = lambda iam, name, statements: writes.append(name)
    revoker.apply(Revocation("corp", "subject-bob", "bob@example.com", at, "test"), again=True)
    assert writes == [], "the role-wide statement covers bob: the settled pass has nothing to add"


def test_an_issuance_long_after_the_revocation_adds_no_statement(world, sessions, access):
    """The person re-enabled and issued credentials again: a revocation applied late (a backlog, or its settled
    pass) does not put a statement that denies nothing on that role (it would fill the policy budget)."""
    _, revoker, audit, _ = world
    at = time.time()
    audit.append(
        {
            "type": "credentials",
            "outcome": "success",
            "subject": "subject-bob",
            "role_arn": f"arn:aws:iam::{PRODUCTION}:role/aws-reserved/sso.amazonaws.com/{role_names(access)[0]}",
            "source_identity": "bob@example.com",
            "time": at + SETTLE_SECONDS + 60,
        }
    )
    assert revoker.apply(Revocation("corp", "subject-bob", "bob@example.com", at, "test")) == []


# --- the policy documents, pure ----------------------------------------------------------------------------------


def test_statements_merge_per_person_and_collapse_past_the_budget():
    one = merged([], "bob@example.com", 100, 200)
    assert len(one) == 1
    again = merged(one, "bob@example.com", 50, 300)
    assert len(again) == 1 and again[0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"] == iso(100)
    assert again[0]["Sid"].endswith("Until300")
    others = [{"Sid": "SomeoneElses", "Effect": "Deny", "Action": "s3:*", "Resource": "*"}]
    many = others
    for n in range(100):
        many = merged(many, f"user{n}@example.com", 1000 + n, 5000 + n)
    assert len(json.dumps({"Statement": many}, separators=(",", ":"))) <= POLICY_BUDGET
    assert many[0] == others[0]  # statements that are not the broker's stay as they are
    role_wide = [statement for statement in many if statement["Sid"].startswith("BrokerRevokeAll")]
    assert len(role_wide) == 1 and len(many) < 30
    # it covers every person folded into it: until their latest expiry, before their latest cutoff
    folded = int(role_wide[0]["Sid"].rsplit("Until", 1)[1])
    assert folded >= max(int(s["Sid"].rsplit("Until", 1)[1]) for s in many[2:]) - 100
    assert unexpired(many, 6000) == others


def test_cutoffs_round_up_to_the_second_and_add_the_margin():
    assert cutoff_of(1000.0, 0) == 1000 and cutoff_of(1000.2, 0) == 1001 and cutoff_of(1000.2, 5) == 1006
    assert iso(0) == "1970-01-01T00:00:00Z"
    assert datetime.fromisoformat(iso(1_800_000_000).replace("Z", "+00:00")) == datetime.fromtimestamp(
        1_800_000_000, UTC
    )


class IamWithoutTheRole:
    """IAM where a role the audit trail names was deleted since (provisioning deletes a role whose assignment
    was removed from access.yaml)."""

    def __init__(self, gone: str):
        self.gone, self.policies = gone, {}

    def get_role_policy(self, RoleName, PolicyName):  # noqa: N803 - botocore's parameter names
        if RoleName not in self.policies:
            raise ClientError({"Error": {"Code": "NoSuchEntity", "Message": "not found"}}, "GetRolePolicy")
        return {"PolicyDocument": self.policies[RoleName]}

    def put_role_policy(self, RoleName, PolicyName, PolicyDocument):  # noqa: N803
        if RoleName == self.gone:
            raise ClientError({"Error": {"Code": "NoSuchEntity", "Message": "role not found"}}, "PutRolePolicy")
        self.policies[RoleName] = PolicyDocument


def test_a_revocation_naming_a_deleted_role_does_not_hold_up_the_others(access):
    """The deleted role's sessions died with it; the outbox goes on (it stopped there for good: the worker
    retried the failing record every 2 s, and no later revocation of anyone reached AWS)."""
    audit, outbox = MemoryAuditLog(), MemoryChangeLog()
    iam = IamWithoutTheRole(gone="OldRole")
    revoker = AwsRevoker(access, lambda account, service: iam, outbox, audit, MemoryStateStore())
    arn = f"arn:aws:iam::{PRODUCTION}:role/aws-reserved/sso.amazonaws.com/{{}}"
    for subject, email, name in (("sub-bob", "bob@example.com", "OldRole"), ("sub-eve", "eve@example.com", "Live")):
        audit.append(
            {
                "type": "credentials",
                "outcome": "success",
                "subject": subject,
                "role_arn": arn.format(name),
                "source_identity": email,
            }
        )
    now = time.time()
    outbox.append(Revocation("corp", "sub-bob", "bob@example.com", now, "test").to_record())
    outbox.append(Revocation("corp", "sub-eve", "eve@example.com", now + 1, "test").to_record())
    revoker.step()
    assert "Live" in iam.policies
    bobs = audit.query(AuditQuery(event_type="revocation", person="sub-bob"))
    assert bobs[0]["roles"] == [], bobs  # nothing was denied on the role that is gone
