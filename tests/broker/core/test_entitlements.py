"""Who is offered which role: exactly their groups' assignments, stable role names, MFA-gated sets."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core.access import Assignment
from broker.core.entitlements import check_entitlement, entitlements_for
from broker.core.naming import role_name
from broker.errors import MfaRequired, NotEntitled

SANDBOX, PRODUCTION = "111111111111", "222222222222"
SETS = ["AdministratorAccess", "EmployeeDirectoryDeveloper", "EmployeeDirectoryReadOnly", "SecurityAudit"]
GROUPS = ["engineering", "aws-admins", "security", "finance", "contractors"]


def offered(entitlements) -> set[tuple[str, str]]:
    return {(e.account_id, e.permission_set) for e in entitlements}


def test_engineer_gets_developer_in_sandbox_and_read_only_in_production(access, person):
    entitlements = entitlements_for(person("bob"), access)
    assert [(e.account_name, e.permission_set) for e in entitlements] == [
        ("example-production", "EmployeeDirectoryReadOnly"),
        ("example-sandbox", "EmployeeDirectoryDeveloper"),
    ]
    developer = entitlements[1]
    assert re.fullmatch(r"AWSReservedSSO_EmployeeDirectoryDeveloper_[0-9a-f]{16}", developer.role_name)
    assert developer.role_arn == f"arn:aws:iam::{SANDBOX}:role/aws-reserved/sso.amazonaws.com/{developer.role_name}"
    assert developer.provider_arn == f"arn:aws:iam::{SANDBOX}:saml-provider/ExampleCorpSSOBroker"
    assert (developer.session_duration, developer.requires_mfa) == (8 * 3600, False)


@pytest.mark.parametrize("group", ["finance", "contractors", "unheard-of"])
def test_groups_without_assignments_get_nothing(access, person, group):
    assert entitlements_for(person("carol", groups=(group,)), access) == []


def test_role_names_are_stable_across_runs_and_distinct_per_broker_account_and_set():
    # Pinned: a change here would rename, so orphan and recreate, every role already provisioned.
    assert (
        role_name("ExampleCorpSSOBroker", SANDBOX, "EmployeeDirectoryDeveloper")
        == "AWSReservedSSO_EmployeeDirectoryDeveloper_c7eabffcfc5c4649"
    )
    names = {
        role_name(broker, account, ps)
        for broker in ("A", "B")
        for account in (SANDBOX, PRODUCTION)
        for ps in ("Admin", "Reader")
    }
    assert len(names) == 8
    assert len(role_name("ExampleCorpSSOBroker", SANDBOX, "X" * 32)) == 64  # IAM's role name limit


def test_mfa_sets_are_listed_without_mfa_but_refused_at_issuance(access, person):
    auditor = person("dana", groups=("security",), mfa=False)
    assert {e.permission_set for e in entitlements_for(auditor, access)} == {"SecurityAudit"}
    assert all(e.requires_mfa for e in entitlements_for(auditor, access))
    with pytest.raises(MfaRequired) as refused:
        check_entitlement(auditor, access, PRODUCTION, "SecurityAudit")
    assert "multi-factor" in refused.value.reason
    with_mfa = person("dana", groups=("security",), mfa=True)
    assert check_entitlement(with_mfa, access, PRODUCTION, "SecurityAudit").permission_set == "SecurityAudit"


@pytest.mark.parametrize(
    "account_id, permission_set",
    [
        (SANDBOX, "AdministratorAccess"),  # a real set in a real account, assigned to another group
        (PRODUCTION, "EmployeeDirectoryDeveloper"),  # the engineer's set, but in the other account
        ("333333333333", "EmployeeDirectoryDeveloper"),  # an account the broker does not manage
        (SANDBOX, "employeedirectorydeveloper"),  # names are exact
        (SANDBOX, "EmployeeDirectoryDeveloper,arn:aws:iam::111111111111:role/x"),
    ],
)
def test_tampered_requests_are_refused(access, person, account_id, permission_set):
    with pytest.raises(NotEntitled):
        check_entitlement(person("bob"), access, account_id, permission_set)


def test_identity_mfa_needs_a_second_factor(person):
    assert not person(authn_methods=frozenset({"pwd"})).mfa
    assert person(authn_methods=frozenset({"pwd", "otp"})).mfa
    assert person(authn_methods=frozenset({"hwk"})).mfa


assignments_strategy = st.lists(
    st.builds(
        Assignment,
        group=st.sampled_from(GROUPS),
        account_id=st.sampled_from([SANDBOX, PRODUCTION]),
        permission_set=st.sampled_from(SETS),
    ),
    unique=True,
    max_size=20,
)
groups_strategy = st.frozensets(st.sampled_from(GROUPS) | st.text(min_size=1, max_size=12), max_size=6)


@settings(max_examples=200, deadline=None)
@given(assignments=assignments_strategy, groups=groups_strategy, mfa=st.booleans())
def test_offered_exactly_the_union_of_the_groups_assignments(access, person, assignments, groups, mfa):
    config = dataclasses.replace(access, assignments=tuple(assignments))
    identity = person(groups=tuple(groups), mfa=mfa)
    entitlements = entitlements_for(identity, config)
    expected = {(a.account_id, a.permission_set) for a in assignments if a.group in groups}
    assert offered(entitlements) == expected
    assert len(entitlements) == len(expected)  # each role once, even when several groups grant it
    assert entitlements == entitlements_for(identity, config)  # deterministic order
    for account_id in (SANDBOX, PRODUCTION):
        for permission_set in SETS:
            if (account_id, permission_set) not in expected:
                with pytest.raises(NotEntitled):
                    check_entitlement(identity, config, account_id, permission_set)
            elif config.permission_sets[permission_set].requires_mfa and not mfa:
                with pytest.raises(MfaRequired):
                    check_entitlement(identity, config, account_id, permission_set)
            else:
                assert check_entitlement(identity, config, account_id, permission_set) in entitlements


@settings(max_examples=200, deadline=None)
@given(groups=groups_strategy, account_id=st.text(max_size=14), permission_set=st.text(max_size=40))
def test_arbitrary_requests_outside_the_offer_are_refused(access, person, groups, account_id, permission_set):
    identity = person(groups=tuple(groups), mfa=True)
    if (account_id, permission_set) in offered(entitlements_for(identity, access)):
        return
    with pytest.raises(NotEntitled):
        check_entitlement(identity, access, account_id, permission_set)


def test_a_partners_prefixed_groups_grant_nothing_the_corp_groups_do(access, person):
    """A partner upstream's `aws-admins` arrives as `partner-aws-admins` (its group mapping's prefix): no
    assignment names it, so the partner's admin gets nothing, least of all AdministratorAccess."""
    partner_admin = person("mallory", groups=("partner-aws-admins", "partner-engineering"), email="m@partner.example")
    assert entitlements_for(partner_admin, access) == []
    with pytest.raises(NotEntitled):
        check_entitlement(partner_admin, access, "111111111111", "AdministratorAccess")
