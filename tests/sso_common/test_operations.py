"""Operating the apps: request IDs (accepted, made, answered, logged, carried on calls), the client's address
behind a trusted proxy, readiness, metrics, and a 503 rather than a 500 when a store is unavailable."""

from __future__ import annotations

import io
import logging
import re
import time

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from flask import Flask

from broker.aws.sts import STS_EVENT, add_request_id
from sso_common.logs import FORMAT, configure_logging
from sso_common.metrics import CountingAuditLog, metrics
from sso_common.operations import install_operations
from sso_common.request_id import RequestId, RequestIdField, current_request_id, outgoing_headers
from sso_common.serve import TrustedProxy, wrap
from sso_common.store.errors import StoreUnavailable
from sso_common.store.memory import MemoryAuditLog, MemoryStateStore
from sso_common.web import install_common


def _call(app, headers: dict[str, str] | None = None, remote: str = "127.0.0.1", path: str = "/"):
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "REMOTE_ADDR": remote,
        "wsgi.input": io.BytesIO(),
        **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in (headers or {}).items()},
    }
    answer: dict = {}

    def start_response(status, response_headers, exc_info=None):
        answer["status"], answer["headers"] = status, dict(response_headers)

    body = b"".join(app(environ, start_response))
    return answer["status"], answer["headers"], body, environ


def _echo(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{current_request_id()}|{environ['REMOTE_ADDR']}|{outgoing_headers()}".encode()]


def test_a_well_formed_request_id_is_kept_and_answered():
    status, headers, body, _ = _call(RequestId(_echo), {"X-Request-ID": "edge-1234abcd"})
    assert headers["X-Request-ID"] == "edge-1234abcd"
    assert body.decode().startswith("edge-1234abcd|") and "'X-Request-ID': 'edge-1234abcd'" in body.decode()
    assert current_request_id() is None and outgoing_headers() == {}  # nothing leaks out of the request


@pytest.mark.parametrize("sent", [None, "", "a" * 129, "bad id", "x\nFORGED", "<script>", "ü-1"])
def test_a_missing_or_malformed_request_id_is_replaced(sent):
    _, headers, body, _ = _call(RequestId(_echo), {"X-Request-ID": sent} if sent is not None else {})
    assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-ID"])
    assert body.decode().split("|")[0] == headers["X-Request-ID"]


def test_every_log_line_carries_the_request_id():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RequestIdField())
    logger = logging.getLogger("tests.request_id")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def logging_app(environ, start_response):
        logger.info("inside")
        start_response("204 No Content", [])
        return []

    try:
        _call(RequestId(logging_app), {"X-Request-ID": "rid-42"})
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = stream.getvalue().splitlines()
    assert " [rid-42] tests.request_id: inside" in inside
    assert " [-] tests.request_id: outside" in outside


def test_the_served_app_logs_its_access_line_with_the_request_id(caplog):
    configure_logging()
    with caplog.at_level(logging.INFO, logger="sso.access"):
        _call(wrap(_echo, access=True, tls=False), {"X-Request-ID": "rid-access"}, path="/healthz")
    (record,) = [r for r in caplog.records if r.name == "sso.access"]
    assert record.request_id == "rid-access"


def test_only_a_trusted_proxy_names_the_client_address():
    app = TrustedProxy.from_environment(_echo, "10.0.0.0/8, 127.0.0.1")
    assert _call(app, {"X-Real-IP": "203.0.113.7"}, remote="127.0.0.1")[2].decode().split("|")[1] == "203.0.113.7"
    assert _call(app, {"X-Real-IP": "203.0.113.7"}, remote="192.0.2.9")[2].decode().split("|")[1] == "192.0.2.9"
    assert _call(app, {"X-Real-IP": "not-an-ip"}, remote="10.1.2.3")[2].decode().split("|")[1] == "10.1.2.3"
    assert TrustedProxy.from_environment(_echo, "") is _echo


def test_the_sts_call_carries_the_request_id():
    """The hook on botocore's request-created event (before signing) adds the header to the real request."""
    client = boto3.client(
        "sts", region_name="us-east-1", endpoint_url="http://127.0.0.1:9", config=Config(signature_version=UNSIGNED)
    )
    client.meta.events.register_first(STS_EVENT, add_request_id)
    sent: dict = {}

    def capture(request, **_):
        sent.update(request.headers)
        raise RuntimeError("captured")  # no network

    client.meta.events.register("before-send.sts.AssumeRoleWithSAML", capture)

    def app(environ, start_response):
        with pytest.raises(RuntimeError, match="captured"):
            client.assume_role_with_saml(
                RoleArn="arn:aws:iam::1:role/r", PrincipalArn="arn:aws:iam::1:saml-provider/p", SAMLAssertion="x" * 8
            )
        start_response("204 No Content", [])
        return []

    _call(RequestId(app), {"X-Request-ID": "rid-sts-1"})
    assert sent.get("X-Request-ID") in ("rid-sts-1", b"rid-sts-1")


# --- readiness, metrics, StoreUnavailable ------------------------------------------------------------


class DownStore(MemoryStateStore):
    def ping(self) -> None:
        raise StoreUnavailable("the state store (Redis)", "ConnectionError: refused")

    def get(self, kind, key):
        raise StoreUnavailable("the state store (Redis)", "ConnectionError: refused")


@pytest.fixture
def app():
    app = Flask("ops")
    install_common(app, "Ops test", secure_cookies=False)

    @app.get("/uses-the-store")
    def uses():
        return str(app.config["STORE"].get("k", "v"))

    return app


def test_healthz_stays_up_while_readiness_reports_the_store_down(app):
    app.config["STORE"] = DownStore()
    install_operations(app, "test", {"state": app.config["STORE"], "audit": MemoryAuditLog()})
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["checks"] == {"state": "unavailable: ConnectionError: refused", "audit": "ok"}


def test_readiness_is_ready_when_every_store_answers(app):
    app.config["STORE"] = MemoryStateStore()
    install_operations(app, "test", {"state": app.config["STORE"]})
    assert app.test_client().get("/readyz").json == {"status": "ready", "service": "test", "checks": {"state": "ok"}}


def test_a_store_down_is_a_503_with_retry_after_never_a_500(app):
    app.config["STORE"] = DownStore()
    install_operations(app, "test", {"state": app.config["STORE"]})
    before = _sample(app, 'sso_refusals_total{reason="store_unavailable",service="test"}')
    page = app.test_client().get("/uses-the-store", headers={"Accept": "text/html"})
    assert page.status_code == 503 and page.headers["Retry-After"] == "5"
    assert "Try again in a few seconds" in page.get_data(as_text=True)
    assert _sample(app, 'sso_refusals_total{reason="store_unavailable",service="test"}') == before + 1


def _sample(app, name: str) -> float:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_requests_logins_and_issuances_in_the_text_format(app):
    app.config["STORE"] = MemoryStateStore()
    install_operations(app, "test", {"state": app.config["STORE"]})
    audit = CountingAuditLog(MemoryAuditLog())
    logins = _sample(app, 'sso_logins_total{outcome="success",service="portal"}')
    issued = _sample(app, 'sso_credential_issuances_total{channel="sso-api",outcome="success"}')
    refused = _sample(app, 'sso_refusals_total{reason="credentials",service="portal"}')
    audit.append({"type": "sign_in", "outcome": "success", "channel": "portal"})
    audit.append({"type": "credentials", "outcome": "success", "channel": "sso-api"})
    audit.append({"type": "credentials", "outcome": "failure", "channel": "portal"})
    app.test_client().get("/uses-the-store")
    answer = app.test_client().get("/metrics")
    assert answer.status_code == 200 and answer.content_type.startswith("text/plain; version=0.0.4")
    assert _sample(app, 'sso_logins_total{outcome="success",service="portal"}') == logins + 1
    assert _sample(app, 'sso_credential_issuances_total{channel="sso-api",outcome="success"}') == issued + 1
    assert _sample(app, 'sso_refusals_total{reason="credentials",service="portal"}') == refused + 1
    text = answer.get_data(as_text=True)
    assert (
        'sso_http_request_duration_seconds_bucket{endpoint="uses",le="0.005",method="GET",service="test",status="200"}'
        in text
    )
    assert len(audit.query()) == 3  # the audit trail itself is untouched
    assert metrics() is metrics()


def test_a_method_no_address_takes_is_one_metric_label_and_a_405_names_its_address(app):
    """The method is the client's word: any other than HTTP's own is "other", so a client cannot add series. A
    routing-time 405 is labelled with the address's endpoint (the rule for the first method it takes, in order:
    the same in every process) and answered with Allow."""
    app.config["STORE"] = MemoryStateStore()
    install_operations(app, "methods", {"state": app.config["STORE"]})
    for method in ("BREW", "PROPFIND", "BREW"):
        answer = app.test_client().open("/uses-the-store", method=method)
        assert answer.status_code == 405 and answer.headers["Allow"] == "GET, HEAD, OPTIONS"
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'endpoint="uses",method="other",service="methods",status="405"' in text
    assert "BREW" not in text and "PROPFIND" not in text


def test_each_endpoint_adds_the_cpu_time_of_its_requests(app):
    @app.get("/busy")
    def busy():
        deadline = time.thread_time() + 0.02
        while time.thread_time() < deadline:  # 20 ms of CPU, not of waiting
            pass
        return "done"

    @app.get("/waits")
    def waits():
        time.sleep(0.05)
        return "done"

    app.config["STORE"] = MemoryStateStore()
    install_operations(app, "cpu", {"state": app.config["STORE"]})
    busy_cpu = 'sso_http_request_cpu_seconds_total{endpoint="busy",method="GET",service="cpu"}'
    waits_cpu = 'sso_http_request_cpu_seconds_total{endpoint="waits",method="GET",service="cpu"}'
    before = _sample(app, busy_cpu)
    for _ in range(3):
        assert app.test_client().get("/busy").status_code == 200
    app.test_client().get("/waits")
    assert 0.06 <= _sample(app, busy_cpu) - before < 0.5
    assert _sample(app, waits_cpu) < 0.02  # sleeping is not CPU
