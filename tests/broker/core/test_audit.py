"""The audit records' shapes, and the audit page's filters read into an AuditQuery (or refused clearly)."""

from __future__ import annotations

import pytest

from broker.core import audit
from broker.core.audit import BadFilter, RequestOrigin, audit_query
from sso_common.store import AuditQuery
from sso_common.store.memory import MemoryAuditLog

NEW_YEAR = 1767225600.0  # 2026-01-01T00:00:00Z


def test_a_command_line_sign_in_is_its_own_kind_of_record(person):
    log = MemoryAuditLog()
    origin = RequestOrigin("192.0.2.7", "Mozilla/5.0", audit.API_CHANNEL)
    audit.cli_sign_in(log, origin, "example-corp-oidc", person("bob"), "aws-cli", "device code")
    audit.cli_sign_in(log, origin, "example-corp-oidc", person("bob"), "aws-cli", "device code", "denied by the user")
    denied, approved = log.query(AuditQuery())
    assert approved["type"] == "cli_sign_in" and approved["outcome"] == "success" and "reason" not in approved
    assert approved["client_name"] == "aws-cli" and approved["flow"] == "device code"
    assert approved["user"] == "bob" and approved["channel"] == "sso-api" and approved["client_address"] == "192.0.2.7"
    assert denied["outcome"] == "failure" and denied["reason"] == "denied by the user"


def test_no_filters_is_everything():
    assert audit_query({}) == AuditQuery()
    assert audit_query({name: "  " for name in audit.FILTER_FIELDS}) == AuditQuery()


def test_filters_become_the_query():
    query = audit_query(
        {
            "person": " bob@example.com ",
            "event": "cli_sign_in",
            "outcome": "failure",
            "channel": "sso-api",
            "since": "2026-01-01",
            "until": "2026-01-01T10:30:15",
            "page": "ignored",
        }
    )
    assert query == AuditQuery(
        event_type="cli_sign_in",
        person="bob@example.com",
        outcome="failure",
        channel="sso-api",
        since=NEW_YEAR,
        until=NEW_YEAR + 10 * 3600 + 30 * 60 + 15,
    )
    assert audit_query({"since": "2026-01-01 10:30"}).since == NEW_YEAR + 10 * 3600 + 30 * 60
    assert audit_query({"person": "bob\n"}).person == "bob"  # surrounding whitespace is trimmed


@pytest.mark.parametrize(
    "params, field",
    [
        ({"outcome": "maybe"}, "outcome"),
        ({"channel": "email"}, "channel"),
        ({"event": "sign_in'--"}, "event"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-13-01"}, "since"),
        ({"until": "2026-01-01T25:00"}, "until"),
        ({"until": "2026-01-01T10:00+02:00"}, "until"),  # UTC only, as the page says
        ({"since": "2026-01-02", "until": "2026-01-02"}, "until"),
        ({"person": "p" * 257}, "person"),
        ({"person": "bo\x1bb"}, "person"),
    ],
)
def test_bad_filters_are_refused_naming_the_field(params, field):
    with pytest.raises(BadFilter) as refused:
        audit_query(params)
    assert refused.value.field == field
    assert refused.value.message.split(":")[0] in {"Person", "Event", "Outcome", "Channel", "From", "Before"}
