"""The explanation's core: the recorder (what validating code says it checked: plan, outcomes, "not
reached"), the entitlement decision as the entitlement rules record it, who may read a story, and where
stories are kept (for their session's length, issuances capped)."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlencode

import pytest

from broker.core import evidence
from broker.core.entitlements import check_entitlement
from broker.core.evidence import FAILED, NOT_REACHED, PASSED, SKIPPED, Fact, Recorder, Section, fingerprint, recording
from broker.core.explain import (
    MAX_ISSUANCES,
    REFUSED,
    SESSION_LINK_KIND,
    SIGNED_IN,
    Explanation,
    Explanations,
    IssuanceStory,
    StoryReference,
    all_decisions,
    entitlement_section,
    issuance_story,
    may_read,
    merge_sections,
    new_binding,
    shown_issuance,
    sign_in_story,
)
from broker.core.sessions import session_reference
from broker.errors import LoginFailed, MfaRequired, NotEntitled
from sso_common.store.memory import MemoryStateStore

SANDBOX, PRODUCTION = "111111111111", "222222222222"


def story_for(person, access, recorder=None, reason=None, **options):
    return sign_in_story(
        recorder or Recorder(),
        upstream_id="example-corp-oidc",
        upstream_name="Example Corp (OIDC)",
        protocol="oidc",
        identity=person,
        access=access,
        reason=reason,
        lifetime=600,
        channel="portal",
        **options,
    )


def test_a_check_the_code_never_reached_stays_not_reached():
    record = Recorder()
    section = record.section("upstream", "The answer").plan(("first", "lib"), ("second", "lib", "x"), ("third", "me"))
    section.passed("first", received="a")
    with pytest.raises(LoginFailed), section.run("second"):
        raise LoginFailed("the second check failed")
    [built] = record.sections()
    assert [(c.name, c.outcome, c.by) for c in built.checks] == [
        ("first", PASSED, "lib"),
        ("second", FAILED, "lib"),
        ("third", NOT_REACHED, "me"),
    ]
    assert built.checks[1].detail == "the second check failed" and built.checks[1].expected == "x"


def test_run_passes_on_return_and_keeps_an_outcome_set_inside():
    section = Recorder().section("s").plan(("a", "me"), ("b", "me"))
    with section.run("a", received="value"):
        pass
    with section.run("b"):
        section.skipped("b", "nothing to compare")
    checks = {c.name: c for c in section.build().checks}
    assert checks["a"].outcome == PASSED and checks["a"].received == "value"
    assert checks["b"].outcome == SKIPPED and checks["b"].detail == "nothing to compare"


def test_outside_recording_nothing_is_kept_and_nothing_breaks():
    record = evidence.recorder()
    assert not record.enabled
    section = record.section("anything").plan(("a", "me"))
    with section.run("a"):
        section.fact("label", "value")
    record.group("g", None, "dropped")
    assert record.sections() == () and record.groups == []
    with recording() as active:
        assert evidence.recorder() is active
    assert evidence.recorder() is record


def test_fingerprints_never_hold_the_secret():
    long_secret = "bat-" + "x" * 40 + "WXYZ"
    shown = fingerprint(long_secret)
    assert long_secret not in shown and shown.startswith("sha256:") and "…WXYZ" in shown
    short = "123456"  # a TOTP code, a short authorization code: no last characters at all
    assert "3456" not in fingerprint(short) and "123456" not in fingerprint(short)


def test_the_decision_covers_every_assignment_as_the_rules_made_it(access, person):
    story = story_for(person("bob"), access)
    decisions = all_decisions(story, access)
    assert story.outcome == SIGNED_IN and len(decisions) == len(access.assignments)
    assert [(d.group, d.account_id, d.permission_set) for d in decisions] == [
        (a.group, a.account_id, a.permission_set) for a in access.assignments
    ]  # in access.yaml's order
    granted = {(d.account_name, d.permission_set) for d in decisions if d.outcome == "granted"}
    assert granted == {
        ("example-sandbox", "EmployeeDirectoryDeveloper"),
        ("example-production", "EmployeeDirectoryReadOnly"),
    }
    other = next(d for d in decisions if d.group == "aws-admins")
    assert other.outcome == "not yours" and other.why == "you are not in the group aws-admins" and not other.matched


def test_only_the_persons_own_assignments_are_kept_the_others_are_listed_when_shown(access, person):
    story = story_for(person("bob"), access)
    assert story.decisions and all(d.matched for d in story.decisions) and story.others_not_yours
    kept = Explanation.from_record(story.to_record())
    assert "not yours" not in str(story.to_record()) and all_decisions(kept, access) == all_decisions(story, access)
    # an assignment kept at sign-in that access.yaml has dropped since is still shown, last
    dropped = story.decisions[0]
    fewer = dataclasses.replace(
        access, assignments=tuple(a for a in access.assignments if a.permission_set != dropped.permission_set)
    )
    shown = all_decisions(story, fewer)
    assert shown[len(fewer.assignments) :] == tuple(
        d for d in story.decisions if d.permission_set == dropped.permission_set
    )
    assert dropped.outcome == "granted"
    # a story kept before: every decision in it, shown as kept
    before = dataclasses.replace(story, decisions=all_decisions(story, access), others_not_yours=False)
    assert all_decisions(before, fewer) == before.decisions


def test_a_person_without_assignments_sees_each_one_not_theirs(access, person):
    story = story_for(person("dave", groups=("contractors",)), access)
    decisions = all_decisions(story, access)
    assert story.decisions == () and {d.outcome for d in decisions} == {"not yours"}
    assert {d.group for d in decisions} == {a.group for a in access.assignments}


def test_mfa_requirements_show_the_outcome_check_entitlement_reached(access, person):
    without = story_for(person("grace", groups=("security",)), access)
    audit = [d for d in all_decisions(without, access) if d.permission_set == "SecurityAudit"]
    assert audit and all(d.outcome == "refused" and d.requires_mfa for d in audit)
    with pytest.raises(MfaRequired) as refusal:
        check_entitlement(person("grace", groups=("security",)), access, SANDBOX, "SecurityAudit")
    assert audit[0].why == refusal.value.reason  # the rule's own words, not a re-statement
    with_mfa = story_for(person("erin", groups=("security",), mfa=True), access)
    assert {d.outcome for d in all_decisions(with_mfa, access) if d.permission_set == "SecurityAudit"} == {"granted"}


def test_a_refusal_before_anyone_is_known_has_no_owner_and_no_decision(access):
    record = Recorder()
    record.section("transaction", "The sign-in transaction").plan(("state", "me")).failed("state", "unknown")
    story = story_for(None, access, record, reason="unknown", binding=new_binding())
    assert story.outcome == REFUSED and story.owner is None and all_decisions(story, access) == ()
    assert story.sections[0].checks[0].outcome == FAILED and story.binding


def test_the_issuance_check_follows_check_entitlement(access, person):
    grace = person("grace", groups=("security",))
    with recording() as record:
        with pytest.raises(MfaRequired):
            check_entitlement(grace, access, SANDBOX, "SecurityAudit")
    section = entitlement_section(record, access, SANDBOX, "SecurityAudit")
    assert [(c.name, c.outcome) for c in section.checks] == [
        ("an assignment gives you this role", PASSED),
        ("multi-factor authentication", FAILED),
    ]
    with recording() as record:
        with pytest.raises(NotEntitled):
            check_entitlement(grace, access, SANDBOX, "AdministratorAccess")
    checks = entitlement_section(record, access, SANDBOX, "AdministratorAccess").checks
    assert [(c.name, c.outcome) for c in checks] == [
        ("an assignment gives you this role", FAILED),
        ("multi-factor authentication", NOT_REACHED),
    ]


def test_who_may_read_a_story(access, person):
    bob, alice = person("bob"), person("alice", groups=("aws-admins",))
    story = story_for(bob, access)
    common = {"admin_group": "aws-admins", "cookie": None}
    assert may_read(story, viewer=bob, viewer_upstream="example-corp-oidc", **common)
    assert not may_read(story, viewer=bob, viewer_upstream="partner", **common)  # another person: (upstream, subject)
    assert not may_read(
        story, viewer=person("carol", groups=("finance",)), viewer_upstream="example-corp-oidc", **common
    )
    assert may_read(story, viewer=alice, viewer_upstream="example-corp-oidc", **common)  # an admin
    binding = new_binding()
    refusal = story_for(None, access, reason="refused", binding=binding)
    assert may_read(refusal, viewer=None, viewer_upstream=None, admin_group="aws-admins", cookie=binding)
    assert not may_read(refusal, viewer=None, viewer_upstream=None, admin_group="aws-admins", cookie=new_binding())
    assert not may_read(refusal, viewer=None, viewer_upstream=None, admin_group="aws-admins", cookie=None)
    assert binding not in str(refusal.to_record())  # only its digest is kept


def test_stories_are_kept_for_their_lifetime_with_the_newest_issuances(access, person):
    now = [1000.0]
    stories = Explanations(MemoryStateStore(), clock=lambda: now[0])
    story = story_for(person("bob"), access, clock=lambda: now[0])
    stories.save(story)
    stories.link_session("session-id", story)
    assert stories.of_session("session-id") == story and stories.load(story.id) == story
    for number in range(MAX_ISSUANCES + 3):
        stories.add_issuance(
            story,
            IssuanceStory(now[0], "portal", SANDBOX, "example-sandbox", f"Set{number}", "", "", "issued", "", ()),
        )
    kept = stories.issuances(story)
    assert len(kept) == MAX_ISSUANCES and kept[-1].permission_set == f"Set{MAX_ISSUANCES + 2}"


def test_a_credential_request_is_added_to_a_story_without_reading_the_story(access, person):
    """The portal names a session's story by its link (ID and expiry): the story itself, a large record, is not
    read for each credential request."""
    now = [1000.0]
    store = MemoryStateStore()
    stories = Explanations(store, clock=lambda: now[0])
    story = story_for(person("bob"), access, clock=lambda: now[0])
    stories.save(story)
    stories.link_session("session-id", story)
    stories.load = lambda story_id: pytest.fail("the story was read")  # type: ignore[method-assign]
    reference = stories.reference_of_session_reference(session_reference("session-id"))
    assert reference == StoryReference(story.id, story.expires)
    stories.add_issuance(
        reference, IssuanceStory(now[0], "portal", SANDBOX, "example-sandbox", "Set", "", "", "issued", "", ())
    )
    assert [issued.permission_set for issued in Explanations(store, clock=lambda: now[0]).issuances(story)] == ["Set"]
    # a link written before links held the expiry: the story is read for it
    store.put(SESSION_LINK_KIND, session_reference("old-session"), {"id": story.id}, 60)
    del stories.load
    assert stories.reference_of_session_reference(session_reference("old-session")) == reference


def test_the_request_body_is_kept_as_parameters_and_built_only_when_shown(access, person):
    """An issuance keeps the AssumeRoleWithSAML parameters (signature value withheld), not the urlencoded body:
    the body is built when the explanation shows it, after the assertion expired, exactly as it was sent but for
    the signature value. A story written when the body itself was kept still shows it."""
    parameters = {
        "Action": "AssumeRoleWithSAML",
        "Version": "2011-06-15",
        "RoleArn": "arn:aws:iam::111111111111:role/Set",
        "PrincipalArn": "arn:aws:iam::111111111111:saml-provider/broker",
        "SAMLAssertion": "PHNhbWxwOlJlc3BvbnNlIC8++/==",
        "DurationSeconds": "3600",
    }
    body = urlencode(parameters)
    recorder = Recorder()
    recorder.section("request", "The AssumeRoleWithSAML request")
    recorder.note("assertion_expires", 2000.0)
    recorder.note("request_parameters", parameters)
    issuance = issuance_story(
        recorder,
        access=access,
        channel="portal",
        account_id=SANDBOX,
        permission_set="EmployeeDirectoryDeveloper",
        role_name="Set",
        role_arn=parameters["RoleArn"],
        outcome="issued",
        clock=lambda: 1000.0,
    )
    stored = issuance.to_record()
    assert stored["request_parameters"] == parameters and stored["request_body"] == ""
    before, after = shown_issuance(issuance, 1999.0), shown_issuance(issuance, 2000.0)
    assert before["request_body"] is None and before["request_body_withheld"] is True
    assert after["request_body"] == body and after["request_body_withheld"] is False
    assert "request_parameters" not in after
    old = {key: value for key, value in stored.items() if key != "request_parameters"} | {"request_body": body}
    assert shown_issuance(IssuanceStory.from_record(old), 2000.0)["request_body"] == body
    assert shown_issuance(IssuanceStory.from_record(old), 1999.0)["request_body_withheld"] is True
    nothing = shown_issuance(IssuanceStory(1000.0, "portal", SANDBOX, "x", "Set", "", "", "refused", "", ()), 3000.0)
    assert nothing["request_body"] is None and nothing["request_body_withheld"] is False


def test_the_assertion_decoded_at_show_time_goes_before_the_request_unless_the_story_holds_one():
    """Stories kept since the assertion is decoded when shown hold no assertion section: the one given goes
    before the request section. A story kept before holds its own, which is shown as it is."""
    decoded = Section("assertion", "The assertion the broker minted", facts=(Fact("Role", "decoded now"),))
    entitlement, request, answer = Section("entitlement", "e"), Section("request", "r"), Section("answer", "a")
    policies = Section("policies", "p")
    new = IssuanceStory(1000.0, "portal", SANDBOX, "x", "Set", "", "", "issued", "", (entitlement, request, answer))
    shown = shown_issuance(new, 1001.0, (policies,), decoded)
    assert [s["key"] for s in shown["sections"]] == ["entitlement", "assertion", "request", "answer", "policies"]
    assert shown["sections"][1]["facts"][0]["value"] == "decoded now"
    kept = Section("assertion", "The assertion the broker minted", facts=(Fact("Role", "kept then"),))
    old = dataclasses.replace(new, sections=(entitlement, kept, request, answer))
    shown = shown_issuance(old, 1001.0, (), decoded)
    assert [(s["key"], s["facts"][0]["value"] if s["facts"] else "") for s in shown["sections"]] == [
        ("entitlement", ""),
        ("assertion", "kept then"),
        ("request", ""),
        ("answer", ""),
    ]
    refused = dataclasses.replace(new, sections=(entitlement,))  # no request made: the assertion (if any) comes last
    assert [s["key"] for s in shown_issuance(refused, 1001.0, (), decoded)["sections"]] == ["entitlement", "assertion"]


def test_two_requests_of_one_sign_in_merge_into_one_story(access, person):
    acs = Recorder()
    acs.section("transaction", "t").plan(("state", "me"), ("browser", "me")).passed("state")
    finish = Recorder()
    finish.section("transaction", "t").plan(("state", "me"), ("browser", "me")).passed("browser")
    merged = merge_sections(acs.sections(), finish.sections())
    assert [(c.name, c.outcome) for c in merged[0].checks] == [("state", PASSED), ("browser", PASSED)]
