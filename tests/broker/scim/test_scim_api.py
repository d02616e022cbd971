"""The SCIM service provider at <portal>/scim/v2, through its HTTP interface (Flask's test client), on memory and
SQLite stores: authentication, Users and Groups, the PATCH forms Okta and Entra ID send, filters, paging, and
what comes back for bad input (errors in SCIM's format, with the right status, and nothing written)."""

from __future__ import annotations

import json
import re
import threading

import pytest

from sso_common.store import AuditQuery, PeopleQuery
from sso_common.store.errors import RETRY_AFTER_SECONDS, StoreUnavailable
from tests.broker.scim.conftest import (
    GROUP_SCHEMA,
    OIDC,
    SAML,
    SAML_TOKEN,
    USER_SCHEMA,
    Scim,
    assert_scim_error,
)


def directory(app):
    return app.extensions["broker"].people.directory


# --- authentication ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-token-wrong-token-wrong", "Basic ZGVtbzpkZW1v", "bearer  "],
    ids=["none", "empty", "no token", "wrong token", "basic", "blank"],
)
def test_a_request_without_a_valid_token_is_401_with_a_bearer_challenge(app, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    for method, path in (("get", "/Users"), ("post", "/Groups"), ("get", "/Schemas"), ("delete", "/Users/x")):
        answer = getattr(app.test_client(), method)(f"/scim/v2{path}", headers=headers)
        assert_scim_error(answer, 401)
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="SCIM"'
    assert directory(app).count() == 0


def test_the_service_provider_config_is_readable_without_a_token_and_says_what_is_supported(app):
    config = app.test_client().get("/scim/v2/ServiceProviderConfig").get_json()
    assert config["patch"]["supported"] is True and config["filter"] == {"supported": True, "maxResults": 200}
    assert config["bulk"]["supported"] is False and config["sort"]["supported"] is False
    assert config["changePassword"]["supported"] is False and config["etag"]["supported"] is True
    assert [scheme["type"] for scheme in config["authenticationSchemes"]] == ["oauthbearertoken"]


def test_discovery_lists_users_groups_and_the_enterprise_extension(scim):
    types = {rt["name"]: rt for rt in scim.get("/ResourceTypes").get_json()["Resources"]}
    assert set(types) == {"User", "Group"} and types["User"]["endpoint"] == "/Users"
    schemas = {schema["id"] for schema in scim.get("/Schemas").get_json()["Resources"]}
    assert schemas == {USER_SCHEMA, GROUP_SCHEMA, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"}


def test_each_upstream_sees_and_writes_only_its_own_people(app, scim):
    bob = scim.user("bob")
    saml = Scim(app.test_client(), SAML_TOKEN)
    assert saml.get("/Users").get_json()["totalResults"] == 0
    assert_scim_error(saml.get(f"/Users/{bob['id']}"), 404)
    assert_scim_error(saml.delete(f"/Users/{bob['id']}"), 404)
    saml.user("bob")  # the same person at the other upstream: another record, another id
    assert directory(app).count(PeopleQuery(upstream=OIDC)) == directory(app).count(PeopleQuery(upstream=SAML)) == 1


# --- users -------------------------------------------------------------------------------------------------


def test_a_provisioned_user_round_trips_and_becomes_a_person_of_the_upstream(app, scim):
    extension = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    created = scim.user(
        "bob",
        schemas=[USER_SCHEMA, extension],
        title="Engineer",
        phoneNumbers=[{"value": "+1 555 0100", "type": "work"}],
        **{extension: {"department": "Engineering", "employeeNumber": "42"}},
    )
    assert created["meta"]["location"] == f"http://localhost/scim/v2/Users/{created['id']}"
    assert created["meta"]["version"] == 'W/"1"'
    read = scim.get(f"/Users/{created['id']}").get_json()
    assert read == created
    assert read["title"] == "Engineer" and read[extension]["employeeNumber"] == "42"
    person = directory(app).get(OIDC, "sub-bob")
    assert person is not None and person.scim_id == created["id"] and person.user_name == "bob@example.com"
    assert (person.email, person.display_name, person.disabled) == ("bob@example.com", "Bob Example", False)
    events = app.extensions["broker"].audit.query(AuditQuery(event_type="scim"))
    assert events[0]["action"] == "user created" and events[0]["subject"] == "sub-bob"


def test_a_password_is_never_kept(app, scim):
    created = scim.user("bob", password="Sup3r-secret-value")
    assert "password" not in created and "password" not in scim.get(f"/Users/{created['id']}").get_json()
    assert "Sup3r-secret-value" not in directory(app).get(OIDC, "sub-bob").scim_attributes


def test_a_user_without_an_external_id_is_kept_but_joined_to_no_sign_in(app, scim):
    body = {"schemas": [USER_SCHEMA], "userName": "bob@example.com"}
    created = scim.post("/Users", body)
    assert created.status_code == 201 and "externalId" not in created.get_json()
    [person] = directory(app).find(PeopleQuery(upstream=OIDC))
    assert person.subject.startswith("scim-unjoined:") and person.scim_id == created.get_json()["id"]
    [event] = app.extensions["broker"].audit.query(AuditQuery(event_type="scim"))
    assert "joined to no sign-in" in event["reason"]
    forged = {"schemas": [USER_SCHEMA], "userName": "eve@example.com", "externalId": person.subject}
    assert_scim_error(scim.post("/Users", forged), 400, "invalidValue")


@pytest.mark.parametrize(
    ("field", "value"),
    [("externalId", "sub\u0000x"), ("externalId", "x" * 257), ("userName", "bob\u202e@example.com"), ("userName", " ")],
    ids=["NUL in externalId", "externalId too long", "invisible formatting", "blank userName"],
)
def test_keys_and_names_with_control_characters_or_too_long_are_refused(app, scim, field, value):
    body = {"schemas": [USER_SCHEMA], "userName": "bob@example.com", "externalId": "sub-bob", field: value}
    assert_scim_error(scim.post("/Users", body), 400)
    assert directory(app).count() == 0


def test_user_names_and_external_ids_are_unique(app, scim):
    scim.user("bob")
    upper = {"schemas": [USER_SCHEMA], "userName": "BOB@EXAMPLE.COM", "externalId": "sub-other"}
    assert_scim_error(scim.post("/Users", upper), 409, "uniqueness")
    again = {"schemas": [USER_SCHEMA], "userName": "robert@example.com", "externalId": "sub-bob"}
    assert_scim_error(scim.post("/Users", again), 409, "uniqueness")
    assert directory(app).count() == 1


def test_a_person_known_from_sign_in_is_adopted_by_their_external_id(app, scim):
    from sso_common.store import Person

    directory(app).put(Person(OIDC, "sub-bob", "bob@example.com", groups=frozenset({"engineering"})))
    created = scim.user("bob")
    person = directory(app).get(OIDC, "sub-bob")
    assert person.scim_id == created["id"] and person.groups == frozenset()  # groups now come from SCIM groups


def test_only_addresses_within_the_upstreams_domains_are_kept(app, scim):
    scim.user("mallory", emails=[{"value": "ceo@other-company.example", "primary": True}], userName="mallory")
    assert directory(app).get(OIDC, "sub-mallory").email == ""  # returned as given, never used
    scim.user("alice", emails=[{"value": "alice@elsewhere.example", "primary": True}, {"value": "alice@example.com"}])
    assert directory(app).get(OIDC, "sub-alice").email == "alice@example.com"


def test_a_changed_external_id_revokes_the_former_subject_and_moves_the_user(app, scim):
    bob = scim.user("bob")
    group = scim.group("engineering", bob["id"])
    replaced = {key: value for key, value in bob.items() if key != "meta"} | {"externalId": "sub-robert"}
    answer = scim.put(f"/Users/{bob['id']}", replaced)
    assert answer.status_code == 200, answer.get_json()
    assert directory(app).get(OIDC, "sub-bob") is None
    moved = directory(app).get(OIDC, "sub-robert")
    assert moved.scim_id == bob["id"] and moved.groups == {"engineering"}
    assert moved.revoked_at is None  # sub-robert never signed in; sub-bob's sessions end with the move
    outbox = app.extensions["broker"].revocations.outbox.read()
    assert [record["subject"] for _, record in outbox] == ["sub-bob"] * 2  # before the move, after
    assert scim.get(f"/Groups/{group['id']}").get_json()["members"][0]["value"] == bob["id"]
    alice = scim.user("alice")
    taken = scim.patch(f"/Users/{alice['id']}", [{"op": "replace", "path": "externalId", "value": "sub-robert"}])
    assert_scim_error(taken, 409, "uniqueness")
    assert directory(app).get(OIDC, "sub-alice").scim_id == alice["id"]


def test_put_replaces_the_user(app, scim):
    bob = scim.user("bob")
    replaced = {
        "schemas": [USER_SCHEMA],
        "userName": "robert@example.com",
        "externalId": "sub-bob",
        "displayName": "Rob",
    }
    answer = scim.put(f"/Users/{bob['id']}", replaced)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["meta"]["version"] == 'W/"2"' and "emails" not in answer.get_json()
    person = directory(app).get(OIDC, "sub-bob")
    assert (person.user_name, person.display_name, person.email) == ("robert@example.com", "Rob", "robert@example.com")


@pytest.mark.parametrize(
    "operations",
    [
        [{"op": "replace", "value": {"active": False}}],  # Okta
        [{"op": "Replace", "path": "active", "value": "False"}],  # Entra ID (capitalised, a string)
        [{"op": "replace", "path": "active", "value": False}],
    ],
    ids=["okta", "entra-id", "path"],
)
def test_deactivating_a_user_the_ways_idps_send_it_disables_and_revokes_them(app, scim, operations):
    bob = scim.user("bob")
    answer = scim.patch(f"/Users/{bob['id']}", operations)
    assert answer.status_code in (200, 204), answer.get_json()
    person = directory(app).get(OIDC, "sub-bob")
    assert person.disabled is True and person.revoked_at is not None
    assert scim.get(f"/Users/{bob['id']}").get_json()["active"] is False
    outbox = app.extensions["broker"].revocations.outbox
    assert [record["subject"] for _, record in outbox.read()] == ["sub-bob", "sub-bob"]  # before the write, after
    assert "recorded again once the directory had the change" in outbox.read()[1][1]["reason"]
    reactivated = scim.patch(f"/Users/{bob['id']}", [{"op": "replace", "path": "active", "value": True}])
    assert reactivated.status_code in (200, 204)
    assert directory(app).get(OIDC, "sub-bob").disabled is False
    assert directory(app).get(OIDC, "sub-bob").revoked_at == person.revoked_at  # what was revoked stays so
    assert len(outbox.read()) == 2


def test_patching_attributes_entra_style(app, scim):
    bob = scim.user("bob")
    operations = [
        {"op": "Replace", "path": "displayName", "value": "Bob B."},
        {"op": "Add", "path": 'emails[type eq "work"].value', "value": "bob.b@example.com"},
        {"op": "Replace", "path": "name.familyName", "value": "B."},
    ]
    answer = scim.patch(f"/Users/{bob['id']}", operations)
    assert answer.status_code in (200, 204), answer.get_json()
    read = scim.get(f"/Users/{bob['id']}").get_json()
    assert read["displayName"] == "Bob B." and read["name"]["familyName"] == "B."
    assert directory(app).get(OIDC, "sub-bob").email == "bob.b@example.com"


def test_deleting_a_user_removes_and_revokes_them_and_takes_them_out_of_their_groups(app, scim):
    bob, alice = scim.user("bob"), scim.user("alice")
    group = scim.group("engineering", bob["id"], alice["id"])
    assert scim.delete(f"/Users/{bob['id']}").status_code == 204
    assert directory(app).get(OIDC, "sub-bob") is None
    assert_scim_error(scim.get(f"/Users/{bob['id']}"), 404)
    assert [m["value"] for m in scim.get(f"/Groups/{group['id']}").get_json()["members"]] == [alice["id"]]
    revocations = [record for _, record in app.extensions["broker"].revocations.outbox.read()]
    assert [(r["subject"], r["email"]) for r in revocations] == [("sub-bob", "bob@example.com")] * 2  # before, after
    assert_scim_error(scim.delete(f"/Users/{bob['id']}"), 404)


def test_if_match_with_an_old_version_is_refused(app, scim):
    bob = scim.user("bob")
    scim.patch(f"/Users/{bob['id']}", [{"op": "replace", "path": "displayName", "value": "B"}])
    stale = scim.patch(
        f"/Users/{bob['id']}", [{"op": "replace", "path": "displayName", "value": "C"}], **{"If-Match": 'W/"1"'}
    )
    assert_scim_error(stale, 412)
    assert directory(app).get(OIDC, "sub-bob").display_name == "B"


# --- groups and the upstream's group mapping ---------------------------------------------------------------------


def test_group_membership_gives_the_mapped_broker_group(app, scim):
    bob = scim.user("bob")
    group = scim.group("engineering", bob["id"])
    assert directory(app).get(OIDC, "sub-bob").groups == {"engineering"}
    assert scim.get(f"/Users/{bob['id']}").get_json()["groups"][0]["value"] == group["id"]
    removed = scim.patch(f"/Groups/{group['id']}", [{"op": "remove", "path": f'members[value eq "{bob["id"]}"]'}])
    assert removed.status_code in (200, 204), removed.get_json()
    assert directory(app).get(OIDC, "sub-bob").groups == frozenset()


def test_a_group_outside_the_upstreams_mapping_grants_nothing_and_is_audited(app, scim):
    bob = scim.user("bob")
    scim.group("domain-admins", bob["id"])  # pushed, kept, but no broker group: the mapping drops it
    scim.group("aws-admins ", bob["id"])  # a near miss is not the same name
    assert directory(app).get(OIDC, "sub-bob").groups == frozenset()
    dropped = app.extensions["broker"].audit.query(AuditQuery(event_type="scim", outcome="dropped"))
    assert {event["group"] for event in dropped} == {"domain-admins", "aws-admins "}


def test_members_are_added_and_removed_in_batches_entra_style(app, scim):
    users = [scim.user(f"user{n}") for n in range(5)]
    group = scim.group("engineering")
    add = [{"op": "Add", "path": "members", "value": [{"value": u["id"]} for u in users]}]
    assert scim.patch(f"/Groups/{group['id']}", add).status_code in (200, 204)
    assert directory(app).count(PeopleQuery(group="engineering")) == 5
    remove = [{"op": "Remove", "path": "members", "value": [{"value": users[0]["id"]}, {"value": users[1]["id"]}]}]
    assert scim.patch(f"/Groups/{group['id']}", remove).status_code in (200, 204)
    assert directory(app).count(PeopleQuery(group="engineering")) == 3


def test_a_renamed_group_is_mapped_again(app, scim):
    bob = scim.user("bob")
    group = scim.group("engineering", bob["id"])
    scim.patch(f"/Groups/{group['id']}", [{"op": "replace", "path": "displayName", "value": "finance"}])
    assert directory(app).get(OIDC, "sub-bob").groups == {"finance"}


def test_a_group_with_an_unknown_member_is_refused_whole(app, scim):
    bob = scim.user("bob")
    group = scim.group("engineering", bob["id"])
    operations = [
        {"op": "replace", "path": "displayName", "value": "aws-admins"},
        {"op": "add", "path": "members", "value": [{"value": "no-such-user"}]},
    ]
    assert_scim_error(scim.patch(f"/Groups/{group['id']}", operations), 400, "invalidValue")
    stored = scim.get(f"/Groups/{group['id']}").get_json()
    assert stored["displayName"] == "engineering" and stored["meta"]["version"] == 'W/"1"'
    assert directory(app).get(OIDC, "sub-bob").groups == {"engineering"}


def test_a_member_of_another_upstream_or_a_group_in_a_group_is_refused(app, scim):
    other = Scim(app.test_client(), SAML_TOKEN).user("carol")
    body = {"schemas": [GROUP_SCHEMA], "displayName": "engineering", "members": [{"value": other["id"]}]}
    assert_scim_error(scim.post("/Groups", body), 400, "invalidValue")
    inner = scim.group("finance")
    nested = {
        "schemas": [GROUP_SCHEMA],
        "displayName": "security",
        "members": [{"value": inner["id"], "type": "Group"}],
    }
    assert_scim_error(scim.post("/Groups", nested), 400, "invalidValue")
    assert scim.get("/Groups").get_json()["totalResults"] == 1


def test_concurrent_membership_patches_lose_no_member(app, scim):
    users = [scim.user(f"user{n:02}") for n in range(12)]
    group = scim.group("engineering")
    barrier = threading.Barrier(len(users))
    results = []

    def add(user):
        client = Scim(app.test_client())
        barrier.wait()
        answer = client.patch(
            f"/Groups/{group['id']}", [{"op": "add", "path": "members", "value": [{"value": user["id"]}]}]
        )
        results.append(answer.status_code)

    threads = [threading.Thread(target=add, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(set(results)) in ([200], [204]), results
    assert len(scim.get(f"/Groups/{group['id']}").get_json()["members"]) == len(users)


def test_deleting_a_group_takes_its_broker_group_away(app, scim):
    bob = scim.user("bob")
    group = scim.group("engineering", bob["id"])
    assert scim.delete(f"/Groups/{group['id']}").status_code == 204
    assert directory(app).get(OIDC, "sub-bob").groups == frozenset()
    assert_scim_error(scim.get(f"/Groups/{group['id']}"), 404)


# --- filters and paging ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ('/Users?filter=userName eq "BOB@example.com"', ["bob@example.com"]),
        ('/Users?filter=externalId eq "sub-alice"', ["alice@example.com"]),
        ('/Users?filter=displayName eq "Carol C"', ["carol@example.com"]),
        ('/Users?filter=userName eq "bob@example.com" and externalId eq "sub-bob"', ["bob@example.com"]),
        ('/Users?filter=userName eq "bob@example.com" and externalId eq "sub-alice"', []),
        (
            '/Users?filter=urn:ietf:params:scim:schemas:core:2.0:User:userName eq "alice@example.com"',
            ["alice@example.com"],
        ),
        ('/Users?filter=userName eq "nobody@example.com"', []),
    ],
)
def test_user_filters(scim, path, expected):
    for name in ("alice", "bob"):
        scim.user(name)
    scim.user("carol", displayName="Carol C")
    found = scim.get(path).get_json()
    assert [user["userName"] for user in found["Resources"]] == expected
    assert found["totalResults"] == len(expected)


def test_group_filters_entra_style(scim):
    bob, alice = scim.user("bob"), scim.user("alice")
    engineering = scim.group("engineering", bob["id"])
    scim.group("finance", alice["id"])
    by_name = scim.get('/Groups?filter=displayName eq "Engineering"&excludedAttributes=members').get_json()
    assert [g["id"] for g in by_name["Resources"]] == [engineering["id"]] and "members" not in by_name["Resources"][0]
    member = scim.get(f'/Groups?filter=id eq "{engineering["id"]}" and members[value eq "{bob["id"]}"]').get_json()
    assert member["totalResults"] == 1
    not_member = scim.get(
        f'/Groups?filter=id eq "{engineering["id"]}" and members[value eq "{alice["id"]}"]'
    ).get_json()
    assert not_member["totalResults"] == 0


@pytest.mark.parametrize(
    "filter_text",
    [
        'userName co "bob"',
        'userName eq "bob@example.com" or userName eq "alice@example.com"',
        'not (userName eq "bob@example.com")',
        "userName pr",
        'title eq "Engineer"',
        'emails.value eq "bob@example.com"',
        'meta.created gt "2020-01-01T00:00:00Z"',
    ],
)
def test_filters_it_does_not_evaluate_are_refused_not_half_applied(scim, filter_text):
    scim.user("bob")
    error = assert_scim_error(scim.get(f"/Users?filter={filter_text}"), 400, "invalidFilter")
    assert "userName" in error["detail"]


@pytest.mark.parametrize(
    "filter_text",
    [
        'userName eq "x" or "1" eq "1"',
        "userName eq \"bob@example.com' OR '1'='1\"",
        'userName eq "bob@example.com\\" or userName pr or \\""',
        'userName eq "%" ',
        'userName eq "\') OR 1=1 --"',
        'userName eq "bob@example.com"]',
        "userName eq",
        'userName eq "\\u0000"',
    ],
)
def test_filter_injection_finds_nothing_or_is_refused(scim, filter_text):
    scim.user("bob")
    answer = scim.get(f"/Users?filter={filter_text}")
    if answer.status_code == 200:
        assert answer.get_json()["totalResults"] == 0
    else:
        assert_scim_error(answer, 400)


def test_paging_is_bounded(scim):
    for n in range(7):
        scim.user(f"user{n}")
    page = scim.get("/Users?startIndex=3&count=2").get_json()
    assert (page["totalResults"], page["startIndex"], page["itemsPerPage"]) == (7, 3, 2)
    assert [user["userName"] for user in page["Resources"]] == ["user2@example.com", "user3@example.com"]
    everything = scim.get("/Users?count=100000").get_json()  # capped at maxResults
    assert everything["itemsPerPage"] == 7
    only_total = scim.get("/Users?count=0").get_json()
    assert only_total["totalResults"] == 7 and not only_total.get("Resources")
    assert scim.get("/Users?count=-1").get_json()["itemsPerPage"] == 0  # RFC 7644 3.4.2.4: negative is 0
    assert_scim_error(scim.get("/Users?startIndex=abc"), 400)
    for resource in ("Users", "Groups"):  # past the last result: empty, even past a 64-bit integer
        for start in (8, 99999999999999999999):
            page = scim.get(f"/{resource}?startIndex={start}").get_json()
            assert page.get("Resources", []) == [] and page["startIndex"] == start, page


@pytest.mark.parametrize("resource, attribute", [("Users", "userName"), ("Groups", "displayName")])
def test_a_filter_value_that_is_not_unicode_text_is_an_invalid_filter(scim, resource, attribute):
    """The filter's own escape makes a lone surrogate, which no store can look up (it was a 500)."""
    error = assert_scim_error(scim.get(f'/{resource}?filter={attribute} eq "\\ud800"'), 400, "invalidFilter")
    assert "Unicode text" in error["detail"]


def test_a_search_asks_for_at_most_max_results(app, scim):
    from broker.scim.provider import MAX_RESULTS

    answer = scim.get(f"/Users?count={MAX_RESULTS + 1}")
    assert answer.status_code == 200  # capped, not refused


# --- bad input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "scim_type"),
    [
        (b"{not json", "invalidSyntax"),
        (b"[]", None),
        (b'"a string"', None),
        (json.dumps({"schemas": [USER_SCHEMA], "userName": "bob", "externalId": "s", "unknownAttribute": 1}), None),
        (json.dumps({"schemas": [USER_SCHEMA], "userName": 42, "externalId": "s"}), None),
        (json.dumps({"schemas": ["urn:example:not-a-schema"], "userName": "bob", "externalId": "s"}), None),
        (json.dumps({"schemas": [USER_SCHEMA], "externalId": "s"}), None),
        (
            json.dumps({"schemas": [USER_SCHEMA], "userName": "bob", "externalId": "s", "emails": "bob@example.com"}),
            None,
        ),
        (json.dumps({"schemas": [USER_SCHEMA], "userName": "bob", "externalId": "s", "active": "maybe"}), None),
    ],
    ids=[
        "not json",
        "a list",
        "a string",
        "unknown attribute",
        "wrong type",
        "unknown schema",
        "no userName",
        "emails not a list",
        "active not a boolean",
    ],
)
def test_malformed_users_are_400_in_scims_format_and_write_nothing(app, scim, body, scim_type):
    assert_scim_error(scim.post("/Users", body), 400, scim_type)
    assert directory(app).count() == 0


def test_a_body_of_another_type_is_refused(app, scim):
    answer = scim.post("/Users", "userName=bob", **{"Content-Type": "application/x-www-form-urlencoded"})
    assert_scim_error(answer, 415)


def test_a_huge_body_is_413_and_unread(app, scim):
    from broker.scim.provider import MAX_BODY_BYTES

    body = json.dumps({"schemas": [USER_SCHEMA], "userName": "bob", "externalId": "s", "title": "x" * MAX_BODY_BYTES})
    assert_scim_error(scim.post("/Users", body), 413)
    assert directory(app).count() == 0


def test_huge_lists_are_bounded(app, scim, monkeypatch):
    from broker.scim import storage

    bob = scim.user("bob")
    monkeypatch.setattr(storage, "MAX_GROUP_MEMBERS", 3)
    too_many = {"schemas": [GROUP_SCHEMA], "displayName": "engineering", "members": [{"value": bob["id"]}] * 4}
    assert_scim_error(scim.post("/Groups", too_many), 400, "invalidValue")
    monkeypatch.setattr(storage, "MAX_USER_BYTES", 200)
    assert_scim_error(scim.patch(f"/Users/{bob['id']}", [{"op": "replace", "path": "title", "value": "x" * 300}]), 400)
    assert scim.get("/Groups").get_json()["totalResults"] == 0


@pytest.mark.parametrize(
    "operations",
    [
        [{"op": "replace", "path": "noSuchAttribute", "value": 1}],
        [{"op": "explode", "path": "active", "value": True}],
        [{"op": "replace", "path": "id", "value": "mine"}],
        [{"op": "remove", "path": "userName"}],
        [{"op": "add", "path": "emails[", "value": 1}],
        "not a list",
    ],
    ids=["unknown path", "unknown op", "read-only id", "required attribute", "bad path", "not a list"],
)
def test_bad_patches_are_400_and_change_nothing(app, scim, operations):
    bob = scim.user("bob")
    answer = scim.patch(f"/Users/{bob['id']}", operations)
    assert_scim_error(answer, 400)
    assert scim.get(f"/Users/{bob['id']}").get_json() == scim.get(f"/Users/{bob['id']}").get_json()
    assert scim.get(f"/Users/{bob['id']}").get_json()["meta"]["version"] == 'W/"1"'


def test_unknown_paths_and_methods_and_bulk_are_scim_errors(scim):
    assert_scim_error(scim.get("/Nothing"), 404)
    assert_scim_error(scim.get("/Users/no-such-id"), 404)
    assert_scim_error(scim.client.put("/scim/v2/Users", headers=scim.headers()), 405)
    assert_scim_error(scim.post("/Bulk", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"]}), 501)
    assert_scim_error(scim.get("/"), 501)  # search at the root
    assert_scim_error(scim.get("/Schemas?filter=id pr"), 403)
    assert_scim_error(scim.get("/Users?sortBy=userName"), 501)


def test_an_internal_failure_is_a_scim_500_naming_only_a_reference(app, scim, monkeypatch, caplog):
    def fail(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app.extensions["broker"].people.directory, "count", fail)
    body = assert_scim_error(scim.get("/Users"), 500)
    assert "secret internals" not in json.dumps(body) and "reference" in body["detail"]


def test_a_store_that_is_down_is_a_retryable_scim_503_not_a_500(app, scim, monkeypatch):
    def down(*args, **kwargs):
        raise StoreUnavailable("the directory", "OperationalError: connection refused")

    monkeypatch.setattr(app.extensions["broker"].people.directory, "count", down)
    before = _refusals_for_outages(app)
    answer = scim.get("/Users")
    body = assert_scim_error(answer, 503)
    assert answer.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert "try again" in body["detail"].lower() and "OperationalError" not in body["detail"]
    assert _refusals_for_outages(app) == before + 1  # counted as every other 503 for an outage is


def _refusals_for_outages(app) -> float:
    metrics = app.test_client().get("/metrics").text
    found = re.search(r'^sso_refusals_total\{reason="store_unavailable",service="portal"\} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0
