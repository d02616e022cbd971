"""Claims to an Identity, and the trust boundary's rules, as pure functions: no server involved.

Every refusal is a LoginFailed whose reason names the problem without echoing a hostile value."""

from __future__ import annotations

import pytest

from broker.connectors.mapping import MAX_GROUPS, Authentication, IdentityMapping
from broker.connectors.trust import MfaPolicy
from broker.errors import LoginFailed
from tests.broker.connectors.trusts import trust

ADFS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/"
ENTRA_GROUPS = "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"
NOW = Authentication(time=1_800_000_000)
GOOD = {
    "email": "alice@example.com",
    "name": "Alice Anderson",
    "preferred_username": "alice",
    "groups": ["engineering", "aws-admins"],
    "department": "Engineering",
}


def mapping(**boundary) -> IdentityMapping:
    return IdentityMapping(
        email="email",
        display_name="name",
        groups="groups",
        department="department",
        username="preferred_username",
        trust=trust("corp", **boundary),
    )


def identity(values=None, subject="sub-1", authn=NOW, **boundary):
    return mapping(**boundary).identity(subject, GOOD if values is None else values, authn=authn, issuer="https://idp")


def refused(values=None, subject="sub-1", authn=NOW, **boundary) -> str:
    with pytest.raises(LoginFailed) as failure:
        identity(values, subject, authn, **boundary)
    return failure.value.reason


def test_good_claims_make_the_identity():
    person, dropped = identity()
    assert (person.subject, person.email, person.username, person.display_name) == (
        "sub-1",
        "alice@example.com",
        "alice",
        "Alice Anderson",
    )
    assert person.groups == {"engineering", "aws-admins"} and person.department == "Engineering" and not dropped
    assert person.authn_methods == {"pwd"} and not person.mfa and person.auth_time == NOW.time


def test_addresses_are_kept_in_lower_case():
    assert identity({**GOOD, "email": "Alice@EXAMPLE.com"})[0].email == "alice@example.com"


@pytest.mark.parametrize(
    "subject, problem",
    [
        ("abc\x00def", "control or invisible characters"),
        ("abc\ndef", "control or invisible characters"),
        ("abc\u202edef", "control or invisible characters"),  # right-to-left override
        ("abc\u200bdef", "control or invisible characters"),  # zero-width space
        ("x" * 257, "longer than 256"),
        (12345, "not text (a number)"),
        (["sub"], "not text (a list)"),
        (None, "no subject identifier"),
        ("   ", "no subject identifier"),
    ],
)
def test_unusable_subjects_are_refused(subject, problem):
    reason = refused(subject=subject)
    assert problem in reason and "subject" in reason and "\x00" not in reason and "\u202e" not in reason


@pytest.mark.parametrize(
    "field, value, problem",
    [
        ("email", "alice\x07@example.com", "email address with control"),
        ("email", 42, "email address that is not text (a number)"),
        ("email", {"a": 1}, "not text (an object)"),
        ("email", ["alice@example.com", "eve@example.com"], "several values as the email address"),
        ("email", "a" * 250 + "@example.com", "longer than 254"),
        ("email", "alice@example", "not well-formed"),
        ("email", "alice@@example.com", "not well-formed"),
        ("email", '"alice"@example.com', "not well-formed"),
        ("email", "alice example@example.com", "not well-formed"),
        ("email", "a" * 65 + "@example.com", "not well-formed"),  # a local part is at most 64
        ("email", "", "no email address"),
        ("email", None, "no email address"),
        ("preferred_username", "alice\tadmin", "username with control"),
        ("preferred_username", True, "username that is not text (true/false)"),
        ("preferred_username", "u" * 129, "longer than 128"),
        ("name", "Alice\u2028Anderson", "display name with control"),
        ("department", "x" * 300, "department longer than 256"),
        ("groups", ["engineering", 7], "group name that is not text"),
        ("groups", ["engineering", "aws-admins\x00"], "group name with control"),
        ("groups", ["g" * 257], "group name longer than 256"),
        ("groups", [["nested"]], "group name that is not text (a list)"),
        ("groups", [f"g{i}" for i in range(MAX_GROUPS + 1)], f"more than {MAX_GROUPS} groups"),
    ],
)
def test_unusable_claims_are_refused(field, value, problem):
    reason = refused({**GOOD, field: value})
    assert problem in reason, reason


def test_a_single_group_as_a_string_and_empty_groups_are_accepted():
    assert identity({**GOOD, "groups": "engineering"})[0].groups == {"engineering"}
    assert identity({**GOOD, "groups": ["", "engineering"]})[0].groups == {"engineering"}


def test_descriptive_fields_take_the_first_of_several_values():
    person, _ = identity({**GOOD, "name": ["Alice A.", "Alice Anderson"], "department": []})
    assert person.display_name == "Alice A." and person.department == ""


# -- the trust boundary ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "email, domains, allowed",
    [
        ("alice@example.com", ("example.com",), True),
        ("alice@eu.example.com", ("example.com",), False),
        ("alice@eu.example.com", ("*.example.com",), True),
        ("alice@example.com", ("*.example.com",), False),
        ("alice@example.com.evil.test", ("example.com",), False),
        ("alice@notexample.com", ("*.example.com",), False),
        ("alice@partner.example", ("example.com", "partner.example"), True),
    ],
)
def test_an_upstream_may_assert_only_its_own_domains(email, domains, allowed):
    if allowed:
        assert identity({**GOOD, "email": email}, domains=domains)[0].email == email
    else:
        assert f"may not vouch for {email}" in refused({**GOOD, "email": email}, domains=domains)


@pytest.mark.parametrize(
    "rule, value, outcome",
    [
        ("if_present", True, "accepted"),
        ("if_present", "true", "accepted"),  # SAML attributes and some IdPs send text
        ("if_present", None, "accepted"),  # absent: Entra ID and every SAML IdP
        ("if_present", False, "not verified"),
        ("if_present", "FALSE", "not verified"),
        ("if_present", "maybe", "not true or false"),
        ("if_present", ["true", "false"], "not true or false"),
        ("required", True, "accepted"),
        ("required", None, "did not say"),
        ("required", False, "not verified"),
        ("ignore", False, "accepted"),
        ("ignore", "garbage", "accepted"),
    ],
)
def test_email_verified_rules(rule, value, outcome):
    values = {**GOOD, **({} if value is None else {"email_verified": value})}
    if outcome == "accepted":
        assert identity(values, email_verified=rule)[0].email == "alice@example.com"
    else:
        assert outcome in refused(values, email_verified=rule)


def test_groups_outside_the_mapping_are_dropped_and_reported():
    values = {**GOOD, "groups": ["engineering", "AWS Admins", "chess-club", "aws-admins "]}
    person, dropped = identity(values, keep=("engineering",), mapped={"AWS Admins": "aws-admins"})
    assert person.groups == {"engineering", "aws-admins"}  # "AWS Admins" mapped
    assert dropped == {
        "chess-club",
        "aws-admins",
    }  # names are trimmed, then matched exactly: "aws-admins" is not mapped


def test_a_prefix_namespaces_every_other_group():
    person, dropped = identity({**GOOD, "groups": ["aws-admins", "sales"]}, keep=(), prefix="partner-")
    assert person.groups == {"partner-aws-admins", "partner-sales"} and not dropped


def test_without_a_mapping_no_group_passes():
    person, dropped = identity(keep=())
    assert person.groups == frozenset() and dropped == {"engineering", "aws-admins"}


@pytest.mark.parametrize(
    "policy, authn, mfa",
    [
        (MfaPolicy(), Authentication(time=0, amr=frozenset({"otp", "mfa"})), False),  # not trusted for MFA
        (MfaPolicy(amr=frozenset({"otp"})), Authentication(time=0, amr=frozenset({"pwd", "otp"})), True),
        (MfaPolicy(amr=frozenset({"otp"})), Authentication(time=0, amr=frozenset({"mfa"})), False),
        (MfaPolicy(acr=frozenset({"urn:mfa"})), Authentication(time=0, acr="urn:mfa"), True),
        (MfaPolicy(acr=frozenset({"urn:mfa"})), Authentication(time=0, acr="urn:pwd"), False),
        (
            MfaPolicy(authn_contexts=frozenset({"urn:mfa"})),
            Authentication(time=0, contexts=frozenset({"urn:mfa"})),
            True,
        ),
    ],
)
def test_mfa_counts_only_with_the_values_the_upstream_is_trusted_for(policy, authn, mfa):
    person, _ = identity(authn=authn, mfa=policy)
    assert person.mfa is mfa and person.authn_methods == ({"pwd", "mfa"} if mfa else {"pwd"})


def test_an_upstream_that_requires_mfa_refuses_sign_ins_without_it():
    policy = MfaPolicy(amr=frozenset({"otp", "hwk"}), require=True)
    assert "did not report a second factor" in refused(authn=Authentication(time=0, amr=frozenset({"pwd"})), mfa=policy)
    assert identity(authn=Authentication(time=0, amr=frozenset({"hwk"})), mfa=policy)[0].mfa


# -- claim names -----------------------------------------------------------------------------------


def test_adfs_and_entra_claim_uris_and_several_sources_for_groups():
    adfs = IdentityMapping(
        email=(ADFS + "emailaddress", ADFS + "upn"),
        display_name=ADFS + "name",
        groups=("http://schemas.xmlsoap.org/claims/Group", ENTRA_GROUPS),
        department="department",
        trust=trust("adfs", keep=("engineering", "security")),
    )
    attributes = {  # SAML: every attribute is a list
        ADFS + "upn": ["alice@example.com"],
        ADFS + "name": ["Alice Anderson"],
        "http://schemas.xmlsoap.org/claims/Group": ["engineering"],
        ENTRA_GROUPS: ["security", "0b7f-guid-not-mapped"],
    }
    person, dropped = adfs.identity("S-1-5-21", attributes, authn=NOW, issuer="http://adfs/services/trust")
    assert person.email == "alice@example.com" and person.display_name == "Alice Anderson"  # upn: the second name
    assert person.groups == {"engineering", "security"} and dropped == {"0b7f-guid-not-mapped"}
    assert person.username == "alice"  # no username claim configured: the address's local part
