"""A slow upstream costs only its own sign-ins, at the real portal under its production server (`broker
serve`, one worker process with its usual threads): 20 sign-ins whose IdP trickles its token answer byte
by byte at once, while /healthz is asked every 50 ms.

Each sign-in ends within the upstream's deadline (2 s here): a 504 page for those that held one of its 4
slots, a 503 page at once for the others; /healthz keeps answering throughout; every refusal is audited."""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import yaml

from devstack.processes import free_port
from sso_common.store import AuditQuery
from sso_common.store.sqlite import SQLiteAuditLog
from tests.support.forge import FakeOIDCProvider
from tests.support.servers import REPO, start_service

SIGN_INS = 20
DEADLINE = 2  # timeout_seconds of the slow upstream
SLOTS = 4  # max_logins_in_flight (the default)


@pytest.fixture(scope="module")
def slow_idp():
    fake = FakeOIDCProvider("portal")
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def portal(tmp_path_factory, slow_idp):
    workdir = tmp_path_factory.mktemp("slow-upstream")
    (workdir / "access.yaml").write_text((REPO / "config" / "access.yaml").read_text())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = {
        "portal_url": url,
        "access": "access.yaml",
        "aws_endpoint_url": f"http://127.0.0.1:{free_port()}",
        "upstreams": [
            {
                "id": "slow",
                "display_name": "Slow IdP",
                "type": "oidc",
                "issuer": slow_idp.url,
                "client_id": "portal",
                "client_secret": "s3cret",
                "allowed_email_domains": ["example.com"],
                "groups": {"keep": ["engineering", "aws-admins", "finance", "contractors", "security"]},
                "timeout_seconds": DEADLINE,
                "max_logins_in_flight": SLOTS,
            }
        ],
    }
    (workdir / "broker.yaml").write_text(yaml.safe_dump(config))
    env = {
        "BROKER_INSTANCE_DIR": str(workdir / "instance"),
        "AWS_ACCESS_KEY_ID": "testing",  # no credential chain lookup (instance metadata) at start-up
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    service = start_service(
        "portal", ["broker", "--config", str(workdir / "broker.yaml"), "serve", "--port", str(port)], url, workdir, env
    )
    yield service, workdir
    service.stop()


def test_a_trickling_idp_takes_only_its_own_slots_and_healthz_keeps_answering(portal, slow_idp):
    service, workdir = portal
    # the upstream's discovery, fetched (and kept) at a first sign-in's start: twenty first starts at once raced
    # the callbacks for the upstream's slots, and one was refused before its sign-in began
    warm = requests.get(f"{service.url}/login/slow", allow_redirects=False, timeout=10)
    assert warm.status_code == 303, warm.text[:500]
    slow_idp.trickle = 0.05  # a 400-byte answer would take 20 s; each byte well within any read timeout
    results: list[tuple[int, float]] = []

    def sign_in() -> None:
        http = requests.Session()
        started = http.get(f"{service.url}/login/slow", allow_redirects=False, timeout=10)
        assert started.status_code == 303, started.text[:500]
        state = parse_qs(urlsplit(started.headers["Location"]).query)["state"][0]
        began = time.monotonic()
        answer = http.get(f"{service.url}/login/slow/callback", params={"code": "c", "state": state}, timeout=30)
        results.append((answer.status_code, time.monotonic() - began))

    threads = [threading.Thread(target=sign_in) for _ in range(SIGN_INS)]
    health: list[tuple[int, float]] = []
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        began = time.monotonic()
        status = requests.get(f"{service.url}/healthz", timeout=5).status_code
        health.append((status, time.monotonic() - began))
        time.sleep(0.05)
    for thread in threads:
        thread.join(30)

    statuses = sorted(status for status, _ in results)
    timed_out = [elapsed for status, elapsed in results if status == 504]
    busy = [elapsed for status, elapsed in results if status == 503]
    print(f"sign-ins: {statuses}; slowest 504 {max(timed_out):.2f} s, slowest 503 {max(busy):.2f} s")
    print(f"healthz: {len(health)} answers, slowest {max(h for _, h in health) * 1000:.0f} ms")
    assert len(results) == SIGN_INS and set(statuses) <= {503, 504}, statuses
    assert 1 <= len(timed_out) <= SLOTS and len(busy) >= SIGN_INS - SLOTS
    assert max(timed_out) < DEADLINE + 1.5  # cut at the deadline, not after the whole trickle
    assert max(busy) < 1.5  # refused at once
    assert health and all(status == 200 for status, _ in health)
    assert max(latency for _, latency in health) < 1.0, health

    failures = SQLiteAuditLog(str(workdir / "instance" / "audit.db")).query(
        AuditQuery(event_type="sign_in", outcome="failure"), limit=100
    )
    assert len(failures) == SIGN_INS
    assert {f["reason"].split(" (")[0] for f in failures} <= {
        "Slow IdP did not answer in time",
        "Too many sign-ins are waiting for Slow IdP right now",
    }
