"""The STS call itself, against a stand-in STS on loopback that misbehaves on demand: one retry on a kept-alive
connection the server closed, on a connection error or a 5xx, none on a refusal, the overall deadline, the
request ID carried (and signed), the body sent and signed once as the bytes botocore's serializer describes."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlencode

import boto3
import pytest
from botocore.utils import parse_timestamp
from hypothesis import given
from hypothesis import strategies as st

from broker.aws.sts import StsCredentialIssuer, form_encode, parse_sts_timestamp
from broker.core.entitlements import check_entitlement
from broker.errors import StsRefused, StsUnavailable
from sso_common.request_id import RequestId
from tests.broker.conftest import BROKER_ENTITY_ID
from tests.support.loopback import LoopbackServer, Quiet

SANDBOX = "111111111111"
ANSWER = b"""<AssumeRoleWithSAMLResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithSAMLResult>
    <Credentials>
      <AccessKeyId>ASIASTANDIN000000001</AccessKeyId>
      <SecretAccessKey>stand-in-secret</SecretAccessKey>
      <SessionToken>stand-in-token</SessionToken>
      <Expiration>2030-01-01T00:00:00Z</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::111111111111:assumed-role/Role/bob@example.com</Arn>
      <AssumedRoleId>AROASTANDIN:bob@example.com</AssumedRoleId>
    </AssumedRoleUser>
  </AssumeRoleWithSAMLResult>
  <ResponseMetadata><RequestId>stand-in</RequestId></ResponseMetadata>
</AssumeRoleWithSAMLResponse>"""


def _error(code: str) -> bytes:
    return (
        f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>stand-in says {code}</Message></Error>"
        f"<RequestId>stand-in</RequestId></ErrorResponse>"
    ).encode()


class StandInSts:
    """A loopback HTTP/1.1 server (keep-alive) that records every request and answers as `mode` says:
    "ok"; "drop-reused" (a request on an already used connection is read, then the connection is closed
    without an answer, as a server closing an idle kept-alive connection does); "drop" (every request);
    "503"; "403"; "hang" (read, never answer)."""

    def __init__(self, mode: str = "ok"):
        self.mode = mode
        self.requests: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(Quiet):
            protocol_version = "HTTP/1.1"
            served = 0

            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.served += 1
                mode = outer.mode
                if mode == "drop" or (mode == "drop-reused" and self.served > 1):
                    self.close_connection = True
                    return
                if mode == "hang":
                    time.sleep(5)
                    self.close_connection = True
                    return
                status, payload = {
                    "503": (503, _error("ServiceUnavailable")),
                    "403": (403, _error("AccessDenied")),
                }.get(mode, (200, ANSWER))
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = LoopbackServer(Handler).start()
        self.url = self.server.url

    def close(self):
        self.server.close()


@pytest.fixture
def sts():
    server = StandInSts()
    yield server
    server.close()


@pytest.fixture
def bob(person):
    return person("bob")


@pytest.fixture
def entitlement(bob, access):
    return check_entitlement(bob, access, SANDBOX, "EmployeeDirectoryDeveloper")


def issuer_for(sts: StandInSts, signing_identity, **options) -> StsCredentialIssuer:
    return StsCredentialIssuer(sts.url, "us-east-1", signing_identity, BROKER_ENTITY_ID, **options)


def test_the_call_is_sent_once_with_the_assertion_encoded_once(sts, signing_identity, bob, entitlement):
    credentials = issuer_for(sts, signing_identity).issue(bob, entitlement)
    assert credentials.access_key_id == "ASIASTANDIN000000001" and credentials.expiration.year == 2030
    [(headers, body)] = sts.requests
    sent = parse_qs(body.decode(), strict_parsing=True)
    assert sent["Action"] == ["AssumeRoleWithSAML"] and sent["Version"] == ["2011-06-15"]
    assert sent["RoleArn"] == [entitlement.role_arn] and sent["PrincipalArn"] == [entitlement.provider_arn]
    assert sent["DurationSeconds"] == [str(entitlement.session_duration)]
    assert sent["SAMLAssertion"][0].startswith("PD94bWwg")  # base64 of the XML declaration
    assert headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert "authorization" not in headers  # no caller session: unsigned, as real STS takes it


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=20),
        st.one_of(
            st.text(max_size=60),
            st.text(alphabet="ABCxyz019+/=", max_size=60),  # base64's alphabet: the fast path
            st.integers(min_value=0, max_value=10**6),
        ),
        max_size=6,
    )
)
def test_the_body_is_what_urlencode_gives(fields):
    assert form_encode(fields) == urlencode(fields).encode()


@given(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)),
    st.sampled_from(["Z", "+00:00", "-05:00", "+05:30", ""]),
    st.booleans(),
)
def test_answer_timestamps_read_as_botocore_reads_them(moment, zone, fraction):
    written = moment.isoformat(timespec="microseconds" if fraction else "seconds") + zone
    ours, botocores = parse_sts_timestamp(written), parse_timestamp(written)
    assert ours == botocores and (ours.tzinfo is None) == (botocores.tzinfo is None) == (zone == "")


def test_answer_timestamps_in_other_forms_fall_back_to_botocore():
    assert parse_sts_timestamp("1893456000") == datetime(2030, 1, 1, tzinfo=UTC)  # epoch seconds
    assert parse_sts_timestamp("Tue, 01 Jan 2030 00:00:00 GMT") == datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_sts_timestamp("2030-01-01T05:00:00+05:00").utcoffset() == timedelta(hours=5)
    assert parse_sts_timestamp("2030-01-01T00:00:00-01:00") == datetime(2030, 1, 1, 1, tzinfo=UTC)


def test_a_kept_alive_connection_closed_by_the_server_is_retried_once(sts, signing_identity, bob, entitlement):
    sts.mode = "drop-reused"
    issuer = issuer_for(sts, signing_identity)
    first = issuer.issue(bob, entitlement)  # a new connection, kept alive
    second = issuer.issue(bob, entitlement)  # sent on it, dropped by the server; sent again on a new one
    assert first.access_key_id == second.access_key_id
    assert len(sts.requests) == 3
    assert sts.requests[1][1] == sts.requests[2][1]  # the same request again


def test_a_connection_dropped_every_time_is_tried_twice_then_unavailable(sts, signing_identity, bob, entitlement):
    sts.mode = "drop"
    with pytest.raises(StsUnavailable) as failure:
        issuer_for(sts, signing_identity).issue(bob, entitlement)
    assert len(sts.requests) == 2
    assert "unreachable" in str(failure.value) and failure.value.__cause__ is None


def test_a_5xx_answer_is_retried_once_then_reported_as_unavailable(sts, signing_identity, bob, entitlement):
    sts.mode = "503"
    with pytest.raises(StsUnavailable) as failure:
        issuer_for(sts, signing_identity).issue(bob, entitlement)
    assert len(sts.requests) == 2 and "ServiceUnavailable" in str(failure.value)


def test_a_refusal_is_not_retried(sts, signing_identity, bob, entitlement):
    sts.mode = "403"
    with pytest.raises(StsRefused) as refusal:
        issuer_for(sts, signing_identity).issue(bob, entitlement)
    assert refusal.value.code == "AccessDenied" and len(sts.requests) == 1


def test_the_overall_deadline_bounds_the_call(sts, signing_identity, bob, entitlement):
    sts.mode = "hang"
    issuer = issuer_for(sts, signing_identity, read_timeout=30, deadline=1.0)
    started = time.monotonic()
    with pytest.raises(StsUnavailable):
        issuer.issue(bob, entitlement)
    assert time.monotonic() - started < 4  # the read timeout (30 s) cut to the deadline, and no retry past it
    assert len(sts.requests) == 1


def test_the_request_id_is_carried_and_signed(sts, signing_identity, bob, entitlement):
    caller = boto3.Session(aws_access_key_id="AKIACALLER0000000001", aws_secret_access_key="s", region_name="us-east-1")
    issuer = issuer_for(sts, signing_identity, caller_sessions=lambda account_id: caller)

    def app(environ, start_response):
        issuer.issue(bob, entitlement)
        start_response("204 No Content", [])
        return []

    RequestId(app)(
        {"REQUEST_METHOD": "POST", "PATH_INFO": "/credentials", "HTTP_X_REQUEST_ID": "rid-sts-2"}, lambda *_: None
    )
    [(headers, _)] = sts.requests
    assert headers["x-request-id"] == "rid-sts-2"
    authorization = headers["authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIACALLER0000000001/")
    assert "/us-east-1/sts/aws4_request" in authorization
    assert "x-request-id" in authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
