"""What the accounts page and the sign-in choice offer, decided in the core: accounts with their roles,
the filter, which accounts are expanded, which roles are unavailable and why; the remembered choice."""

from __future__ import annotations

import dataclasses

import pytest

from broker.core.access import Account
from broker.core.catalogue import EXPANDED_UP_TO, catalogue, human_duration, remembered_first, upstream_explanation
from broker.core.entitlements import check_entitlement
from broker.errors import MfaRequired

SANDBOX, PRODUCTION = "111111111111", "222222222222"


def test_accounts_come_with_their_email_roles_and_descriptions(access, person):
    shown = catalogue(person("alice", groups=("aws-admins", "engineering")), access)
    assert [(a.name, a.id, a.email) for a in shown.accounts] == [
        ("example-production", PRODUCTION, "aws-production@example.com"),
        ("example-sandbox", SANDBOX, "aws-sandbox@example.com"),
    ]
    sandbox = shown.accounts[1]
    assert [r.entitlement.permission_set for r in sandbox.roles] == [
        "AdministratorAccess",
        "EmployeeDirectoryDeveloper",
    ]
    assert sandbox.roles[0].description == access.permission_sets["AdministratorAccess"].description
    assert shown.total == 2 and all(a.expanded for a in shown.accounts) and shown.filter == ""


@pytest.mark.parametrize(
    "text, names",
    [
        ("", ["example-production", "example-sandbox"]),
        ("Sandbox", ["example-sandbox"]),
        ("  example-   PRODUCTION ", []),  # spaces are folded, not dropped
        ("2222", ["example-production"]),
        ("aws-production@example", ["example-production"]),
        ("readonly", ["example-production"]),
        ("nothing", []),
    ],
)
def test_the_filter_matches_name_id_email_and_role(access, person, text, names):
    shown = catalogue(person("bob"), access, text)
    assert [a.name for a in shown.accounts if a.shown] == names and shown.shown == len(names)
    assert shown.total == 2  # the others are there, hidden: clearing the filter shows them


def test_many_accounts_are_collapsed_but_the_one_being_shown(access, person):
    many = {f"{n:012d}": Account(f"{n:012d}", f"account-{n}") for n in range(1, EXPANDED_UP_TO + 2)}
    assignments = tuple(
        dataclasses.replace(access.assignments[0], account_id=account_id, group="engineering") for account_id in many
    )
    wide = dataclasses.replace(access, accounts=many, assignments=assignments)
    shown = catalogue(person("bob"), wide, open_account="000000000002")
    assert [a.id for a in shown.accounts if a.expanded] == ["000000000002"]
    assert [a.id for a in catalogue(person("bob"), wide, "account-1").accounts if a.expanded and a.shown] == [
        "000000000001"
    ]


def test_roles_that_need_mfa_say_why_with_the_refusal_issuance_would_give(access, person):
    grace = person("grace", groups=("security",))
    roles = [role for account in catalogue(grace, access).accounts for role in account.roles]
    with pytest.raises(MfaRequired) as refusal:
        check_entitlement(grace, access, SANDBOX, "SecurityAudit")
    assert [role.unavailable for role in roles] == [refusal.value.reason] * 2
    erin = person("erin", groups=("security",), mfa=True)
    assert all(role.unavailable is None for a in catalogue(erin, access).accounts for role in a.roles)


def test_nobody_without_assignments_gets_accounts(access, person):
    assert catalogue(person("dave", groups=("contractors",)), access).total == 0


@pytest.mark.parametrize(
    "remembered, order",
    [
        (None, ["oidc", "saml"]),
        ("saml", ["saml", "oidc"]),
        ("oidc", ["oidc", "saml"]),
        ("gone", ["oidc", "saml"]),
        ("", ["oidc", "saml"]),
    ],
)
def test_the_sign_in_choice_used_last_comes_first(remembered, order):
    assert remembered_first(["oidc", "saml"], remembered) == order


def test_every_kind_of_upstream_is_explained_in_one_line():
    for protocol in ("oidc", "saml", "something-new"):
        line = upstream_explanation(protocol)
        assert line and "\n" not in line and len(line) < 120


@pytest.mark.parametrize(
    "seconds, said",
    [(3600, "1 hour"), (8 * 3600, "8 hours"), (5400, "1 hour 30 minutes"), (60, "1 minute"), (2700, "45 minutes")],
)
def test_session_lengths_as_people_say_them(seconds, said):
    assert human_duration(seconds) == said
