"""Delivering a back-channel logout token to a relying party over real HTTP (a scripted server on 127.0.0.1): a
sign-out is not lost to a moment's outage (no answer, a 5xx: each attempt with a new token, as a relying party
refuses a `jti` it has seen), a refusal (4xx) is final, and no token is ever logged."""

from __future__ import annotations

import itertools
import logging
import time
from urllib.parse import parse_qs

import pytest

from devstack.processes import free_port
from idp_mock.oidc_provider import backchannel
from tests.support.loopback import LoopbackServer, Quiet

PREFIX = "eyJhbGciOiJSUzI1NiJ9.a-logout-token-"


def tokens():
    """A token maker: a new token (a new `jti`) each call, as BackChannelLogout's."""
    made = itertools.count(1)
    return lambda: f"{PREFIX}{next(made)}.signature"


class RelyingParty:
    """Answers each POST with the next status of `statuses` (the last one again when they run out)."""

    def __init__(self, statuses: list[tuple[int, dict[str, str]]]):
        self.statuses, self.received, self.times = statuses, [], []
        party = self

        class Handler(Quiet):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                party.received.append(parse_qs(body.decode())["logout_token"][0])
                party.times.append(time.monotonic())
                status, headers = party.statuses[min(len(party.received), len(party.statuses)) - 1]
                self.send_response(status)
                for name, value in {**headers, "Content-Length": "0"}.items():
                    self.send_header(name, value)
                self.end_headers()

        self.server = LoopbackServer(Handler).start()
        self.uri = f"{self.server.url}/backchannel-logout"

    def close(self):
        self.server.close()


@pytest.fixture
def relying_party():
    parties: list[RelyingParty] = []

    def start(*statuses):
        parties.append(RelyingParty(list(statuses)))
        return parties[-1]

    yield start
    for party in parties:
        party.close()


def test_a_relying_party_whose_store_is_down_gets_a_new_token_after_its_retry_after(relying_party, caplog):
    party = relying_party((503, {"Retry-After": "0.3"}), (200, {}))
    with caplog.at_level(logging.INFO, logger=backchannel.__name__):
        backchannel._deliver(party.uri, tokens(), "access-portal", pause=0.01)
    assert party.received == [f"{PREFIX}1.signature", f"{PREFIX}2.signature"]  # not the same jti twice
    assert party.times[1] - party.times[0] >= 0.3  # its Retry-After, not the shorter pause
    assert "delivered to access-portal" in caplog.text and PREFIX not in caplog.text


def test_no_content_is_delivered_too(relying_party, caplog):
    party = relying_party((204, {}))
    with caplog.at_level(logging.INFO, logger=backchannel.__name__):
        backchannel._deliver(party.uri, tokens(), "access-portal", pause=0.01)
    assert len(party.received) == 1 and "delivered to access-portal" in caplog.text


def test_a_refusal_is_final(relying_party, caplog):
    party = relying_party((400, {}))
    with caplog.at_level(logging.INFO, logger=backchannel.__name__):
        backchannel._deliver(party.uri, tokens(), "access-portal", pause=0.01)
    assert len(party.received) == 1
    assert "refused: HTTP 400" in caplog.text and PREFIX not in caplog.text


def test_a_relying_party_that_keeps_failing_is_tried_a_bounded_number_of_times(relying_party, caplog, monkeypatch):
    assert backchannel.LONGEST_PAUSE * (backchannel.ATTEMPTS - 1) < backchannel.TOKEN_LIFETIME / 2
    monkeypatch.setattr(backchannel, "LONGEST_PAUSE", 0.2)
    party = relying_party((502, {"Retry-After": "3600"}))  # a Retry-After beyond reason is capped
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger=backchannel.__name__):
        backchannel._deliver(party.uri, tokens(), "access-portal", pause=0.01)
    assert len(set(party.received)) == backchannel.ATTEMPTS
    assert time.monotonic() - started < 0.2 * (backchannel.ATTEMPTS - 1) + 2
    assert f"failed {backchannel.ATTEMPTS} times, the last: HTTP 502" in caplog.text and PREFIX not in caplog.text


def test_no_answer_at_all_is_tried_again(caplog):
    uri = f"http://127.0.0.1:{free_port()}/backchannel-logout"  # nothing listens there
    with caplog.at_level(logging.INFO, logger=backchannel.__name__):
        backchannel._deliver(uri, tokens(), "access-portal", pause=0.01)
    assert caplog.text.count("trying again") == backchannel.ATTEMPTS - 1
    assert "the last: ConnectionError" in caplog.text and PREFIX not in caplog.text
