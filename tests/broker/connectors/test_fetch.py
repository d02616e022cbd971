"""Every call to an upstream: an overall deadline (a trickled answer is cut off there), no redirects, a size
cap, a few slots per upstream server; and the cache of its documents (Cache-Control within bounds, no
waiting on another thread's refresh).

The servers here are raw sockets on 127.0.0.1 that answer however a test says, byte by byte if need be.
The only waits are the deadlines under test (a second or less)."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable

import pytest

from broker.connectors.fetch import (
    CACHE_CEILING,
    CACHE_DEFAULT,
    CACHE_FLOOR,
    CachedDocument,
    FetchPolicy,
    ServerSlots,
    UpstreamClient,
    cache_lifetime,
)
from broker.errors import UpstreamBusy, UpstreamTimeout, UpstreamUnavailable
from devstack.processes import free_port

Behaviour = Callable[[socket.socket], None]


class _LoopbackServer:
    """A threading TCP server on a free loopback port, serving `handler` from a thread until `stop()`."""

    url: str

    def _serve(self, handler: type[socketserver.BaseRequestHandler]) -> None:
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class RawServer(_LoopbackServer):
    """Reads a request head, then lets `behaviour(connection)` answer; counts requests in `hits`."""

    def __init__(self, behaviour: Behaviour):
        server = self
        self.behaviour, self.hits = behaviour, 0

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = self.request.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                server.hits += 1
                try:
                    server.behaviour(self.request)
                except OSError:
                    pass  # the client cut the connection: what the deadline tests want

        self._serve(Handler)


@pytest.fixture
def serve():
    servers: list[RawServer] = []

    def start(behaviour: Behaviour) -> RawServer:
        servers.append(RawServer(behaviour))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def answer(body: bytes = b'{"ok": true}', status: str = "200 OK", headers: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{headers}"
        f"Connection: close\r\n\r\n"
    ).encode() + body


def trickle(data: bytes, every: float = 0.05) -> Behaviour:
    def behave(connection: socket.socket) -> None:
        for byte in data:
            connection.sendall(bytes([byte]))
            time.sleep(every)

    return behave


def client(url: str, deadline: float = 1.0, **policy) -> UpstreamClient:
    return UpstreamClient("Test IdP", url, FetchPolicy(deadline=deadline, connect_timeout=deadline, **policy))


def test_a_plain_answer_is_read_whole(serve):
    server = serve(lambda c: c.sendall(answer(headers="Cache-Control: max-age=600\r\n")))
    got = client(server.url).get(server.url + "/x?y=1", "discovery document")
    assert got.status == 200 and got.json() == {"ok": True} and got.content_type == "application/json"
    assert got.max_age() == 600


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1]", b"[" * 5000 + b"]" * 5000, b'{"name": "\\ud800"}'],
    ids=["malformed", "not-an-object", "nested-too-deeply", "lone-surrogate"],
)
def test_json_the_portal_cannot_use_is_garbage_from_the_upstream(serve, body):
    """Nesting past the recursion limit was a 500 at sign-in; a lone surrogate would fail wherever kept."""
    server = serve(lambda c: c.sendall(answer(body)))
    with pytest.raises(UpstreamUnavailable, match="answered garbage"):
        client(server.url).get_json(server.url + "/userinfo", "userinfo")


@pytest.mark.parametrize("part", ["headers", "body"])
def test_an_answer_trickled_byte_by_byte_is_cut_at_the_deadline(serve, part):
    """Each byte arrives well within any per-read timeout; the whole answer would take 20 s."""
    whole = answer(b'{"access_token": "' + b"x" * 300 + b'"}')
    head, body = whole.split(b"\r\n\r\n", 1)
    if part == "headers":
        server = serve(trickle(whole))
    else:
        server = serve(lambda c: (c.sendall(head + b"\r\n\r\n"), trickle(body)(c)))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as late:
        client(server.url, deadline=1.0).post_form(server.url + "/token", "token endpoint", b"a=b")
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 1.6, elapsed
    assert late.value.status == 504 and "did not answer in time (token endpoint, 1 s)" in late.value.reason


def test_a_body_without_length_trickled_until_the_deadline_is_not_taken_as_complete(serve):
    head = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n"
    server = serve(lambda c: (c.sendall(head), trickle(b'{"keys": [' + b" " * 100 + b"]}")(c)))
    with pytest.raises(UpstreamTimeout):
        client(server.url, deadline=0.5).get(server.url + "/jwks", "signing keys (JWKS)")


def test_a_silent_server_is_cut_at_the_deadline(serve):
    server = serve(lambda c: time.sleep(3))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        client(server.url, deadline=0.5).get(server.url, "SAML metadata")
    assert time.monotonic() - started < 1.0


def test_redirects_are_never_followed(serve):
    target = serve(lambda c: c.sendall(answer()))
    server = serve(lambda c: c.sendall(answer(b"", "302 Found", f"Location: {target.url}/\r\n")))
    with pytest.raises(UpstreamUnavailable, match="redirect, which the broker does not follow"):
        client(server.url).get(server.url, "discovery document")
    assert target.hits == 0


def test_an_announced_answer_over_the_cap_is_refused_unread(serve):
    server = serve(lambda c: c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\n\r\n" + b"x" * 1000))
    with pytest.raises(UpstreamUnavailable, match="more than the broker accepts"):
        client(server.url, max_bytes=4096).get(server.url, "SAML metadata")


def test_a_chunked_answer_over_the_cap_is_cut(serve):
    chunk = b"1000\r\n" + b"x" * 4096 + b"\r\n"
    server = serve(
        lambda c: c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 4 + b"0\r\n\r\n")
    )
    with pytest.raises(UpstreamUnavailable, match="more than the broker accepts"):
        client(server.url, max_bytes=10_000).get(server.url, "userinfo")


def test_a_closed_port_is_unreachable_at_once():
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match="unreachable") as failure:
        client(url).get(url, "discovery document")
    assert not isinstance(failure.value, UpstreamTimeout) and time.monotonic() - started < 0.5


def test_only_http_and_https_addresses_are_fetched():
    with pytest.raises(UpstreamUnavailable, match="not an http"):
        client("http://127.0.0.1:1").get("file:///etc/passwd", "discovery document")


def test_an_upstream_server_holds_at_most_its_slots_and_the_rest_are_refused_at_once(serve):
    release = threading.Event()
    server = serve(lambda c: (release.wait(5), c.sendall(answer())))
    slots = ServerSlots()
    oidc = UpstreamClient("Corp", server.url, FetchPolicy(deadline=5, max_in_flight=3), slots)
    saml = UpstreamClient("Corp SAML", server.url + "/saml/metadata", FetchPolicy(deadline=5, max_in_flight=2), slots)
    assert oidc.server == saml.server and slots.cap(oidc.server) == 2  # shared, the smaller cap
    results: list[object] = []
    waiting = [
        threading.Thread(target=lambda: results.append(oidc.get(server.url, "token endpoint").status)) for _ in range(2)
    ]
    for thread in waiting:
        thread.start()
    deadline = time.monotonic() + 2
    while server.hits < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(UpstreamBusy) as busy:
        saml.get(server.url, "SAML metadata")
    assert time.monotonic() - started < 0.5 and busy.value.status == 503 and "try again" in busy.value.reason
    release.set()
    for thread in waiting:
        thread.join(5)
    assert results == [200, 200] and saml.get(server.url, "SAML metadata").status == 200  # slots given back


@pytest.mark.parametrize(
    "headers, lifetime",
    [
        ({}, CACHE_DEFAULT),
        ({"cache-control": "public, max-age=600"}, 600),
        ({"cache-control": "max-age=600", "age": "100"}, 500),
        ({"cache-control": "max-age=5"}, CACHE_FLOOR),
        ({"cache-control": "max-age=0, must-revalidate"}, CACHE_FLOOR),
        ({"cache-control": "no-store"}, CACHE_FLOOR),
        ({"cache-control": "no-cache, max-age=900"}, CACHE_FLOOR),
        ({"cache-control": "max-age=31536000"}, CACHE_CEILING),
        ({"cache-control": "max-age=soon"}, CACHE_DEFAULT),
        ({"cache-control": "s-maxage=100"}, CACHE_DEFAULT),
    ],
)
def test_cache_lifetime_honours_max_age_within_bounds(headers, lifetime):
    assert cache_lifetime(headers) == lifetime


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_cached_document_lives_its_lifetime_and_a_failure_is_not_kept():
    clock, fetched = Clock(), []

    def load():
        fetched.append(clock.now)
        if len(fetched) == 2:
            raise UpstreamUnavailable("down")
        return f"v{len(fetched)}", 60.0

    cache = CachedDocument(load, clock)
    assert cache.get() == "v1" and cache.get() == "v1" and len(fetched) == 1
    clock.now += 61
    with pytest.raises(UpstreamUnavailable):  # expired and the upstream is down: no silent stale copy
        cache.get()
    assert cache.get() == "v3"  # the failure was not cached


def test_a_forced_refresh_is_rate_limited():
    clock, count = Clock(), [0]

    def load():
        count[0] += 1
        return count[0], 3600.0

    cache = CachedDocument(load, clock)
    assert cache.get() == 1 and cache.refresh(30) is None
    clock.now += 31
    assert cache.refresh(30) == 2 and cache.get() == 2


def test_no_sign_in_waits_for_another_ones_refresh():
    """While one thread refetches an expired document from a slow upstream, the others keep the previous one."""
    clock, started, release, versions = Clock(), threading.Event(), threading.Event(), iter(range(1, 10))

    def load():
        version = next(versions)
        if version == 2:
            started.set()
            release.wait(5)
        return version, 60.0

    cache = CachedDocument(load, clock)
    assert cache.get() == 1
    clock.now += 61
    slow = threading.Thread(target=cache.get)
    slow.start()
    assert started.wait(5)
    began = time.monotonic()
    assert cache.get() == 1 and time.monotonic() - began < 0.1  # the previous document, at once
    release.set()
    slow.join(5)
    assert cache.get() == 2  # published whole once fetched


class KeepAliveServer(_LoopbackServer):
    """Answers every request of a connection (HTTP/1.1 keep-alive), counting connections and requests; after
    `close_after` answers on a connection it closes that connection without a word."""

    def __init__(self, close_after: int | None = None):
        server = self
        self.connections = self.requests = 0
        self.close_after = close_after

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                server.connections += 1
                answered, data = 0, b""
                while True:
                    while b"\r\n\r\n" not in data:
                        chunk = self.request.recv(4096)
                        if not chunk:
                            return
                        data += chunk
                    head, _, data = data.partition(b"\r\n\r\n")
                    length = next(
                        (
                            int(line.split(b":")[1])
                            for line in head.split(b"\r\n")
                            if line.lower().startswith(b"content-length")
                        ),
                        0,
                    )
                    while len(data) < length:
                        data += self.request.recv(4096)
                    data = data[length:]
                    if server.close_after is not None and answered >= server.close_after:
                        return  # the request is dropped unanswered: a kept-alive connection closed meanwhile
                    server.requests += 1
                    body = b'{"n": %d}' % server.requests
                    self.request.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                        % (len(body), body)
                    )
                    answered += 1

        self._serve(Handler)


@pytest.fixture
def keep_alive():
    servers: list[KeepAliveServer] = []

    def start(**options) -> KeepAliveServer:
        servers.append(KeepAliveServer(**options))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def test_calls_to_an_upstream_reuse_one_connection(keep_alive):
    server = keep_alive()
    upstream = client(server.url)
    for n in range(1, 6):
        got = upstream.post_form(server.url + "/token", "token endpoint", b"code=x") if n % 2 else None
        got = got or upstream.get(server.url + "/jwks", "signing keys (JWKS)")
        assert got.status == 200 and got.json() == {"n": n}
    assert server.requests == 5 and server.connections == 1
    upstream.close()


def test_a_kept_alive_connection_the_server_dropped_is_sent_again_once_on_a_new_one(keep_alive):
    server = keep_alive(close_after=1)  # every connection answers once, then drops the next request
    upstream = client(server.url)
    assert upstream.get(server.url + "/a", "discovery document").json() == {"n": 1}
    assert upstream.post_form(server.url + "/token", "token endpoint", b"code=x").json() == {"n": 2}
    assert server.connections == 2 and server.requests == 2
    upstream.close()


def test_a_fresh_connection_that_is_dropped_is_not_sent_again(keep_alive):
    server = keep_alive(close_after=0)  # drops every request unanswered
    with pytest.raises(UpstreamUnavailable, match="unreachable"):
        client(server.url).get(server.url + "/a", "discovery document")
    assert server.connections == 1


def test_a_reused_connection_keeps_the_overall_deadline(serve):
    """The second call on a kept-alive connection is cut at its own deadline like the first."""
    state = {"calls": 0}

    def behave(connection: socket.socket) -> None:
        state["calls"] += 1
        body = b"{}"
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:  # the next request on the same connection: answered by a trickle
            chunk = connection.recv(4096)
            if not chunk:
                return
            data += chunk
        trickle(answer())(connection)

    server = serve(behave)
    upstream = client(server.url, deadline=0.5)
    assert upstream.get(server.url + "/a", "discovery document").status == 200
    began = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        upstream.get(server.url + "/b", "discovery document")
    assert time.monotonic() - began < 1.5 and state["calls"] == 1
