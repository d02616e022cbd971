"""Every call the broker makes to an upstream identity provider goes through here: OIDC discovery, JWKS,
token and userinfo, SAML metadata.

Each call has
- an overall deadline (`deadline`, 10 s by default), not only a per-read timeout: a watchdog shuts the
  socket down when the deadline passes, so an answer trickled byte by byte (headers included) is cut off
  there, whatever the per-read timeouts;
- no redirect followed (a 3xx is an error: an endpoint that moved is a configuration change, and a
  redirect must not be able to point the broker at another host);
- a size cap on the answer (`max_bytes`, 1 MiB), checked on the announced length and while reading,
  and no compression asked for;
- a slot among the few each upstream server may hold (`max_in_flight`, 4 per worker process; upstreams
  whose configured URL shares scheme, host and port share them, so the OIDC and SAML upstreams of one
  IdP together cannot hold more). Without a free slot within `SLOT_WAIT` the sign-in is refused at once
  with `UpstreamBusy` (503): a slow upstream costs only its own sign-ins, never every worker thread.

Connections are kept alive and reused (a few idle ones per upstream server and client: the code exchange of
a sign-in does not open a new TCP connection); an idle connection the server has closed is dropped before use,
and a call on a reused connection that the server closed meanwhile (no answer at all) is sent once more on a new
one, within the same deadline. One watchdog thread per process serves every call's deadline.

`CachedDocument` keeps a fetched document for its Cache-Control max-age, bounded by a floor and a
ceiling. Fetching happens outside any lock: a document is published whole, by one assignment, and
while one thread refreshes an expired document the others keep using the previous one.

Plain `http.client`, no `requests`: it never reads proxy settings or .netrc from the environment, and
every byte read is under the deadline above. HTTPS uses the system's trust store
(`ssl.create_default_context`, which honours SSL_CERT_FILE).
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from broker.errors import UpstreamBusy, UpstreamTimeout, UpstreamUnavailable
from sso_common import json_input
from sso_common.request_id import outgoing_headers

DEADLINE = 10.0  # seconds for a whole call: connect, send, headers and body
CONNECT_TIMEOUT = 3.0
MAX_BYTES = 1 << 20  # discovery, JWKS, tokens and userinfo are a few KB; one IdP's SAML metadata tens of KB
MAX_IN_FLIGHT = 4  # per upstream server and worker process; keep it below WEB_THREADS (8 by default)
SLOT_WAIT = 0.05  # seconds a call may wait for a slot before the sign-in is refused (503)
# A reused connection that the server closed before answering: sent again once on a new connection.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.CannotSendRequest)

# Cache lifetimes (seconds) of discovery documents, JWKS and SAML metadata.
CACHE_DEFAULT = 3600.0  # when the answer says nothing usable
CACHE_FLOOR = 60.0  # no-store, no-cache or max-age=0 still keep it this long: no refetch per sign-in
CACHE_CEILING = 12 * 3600.0  # a withdrawn key is dropped within this time at the latest

USER_AGENT = "sso-login-broker"
_TLS = ssl.create_default_context()
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(no-store|no-cache)\s*(?:[,=]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class FetchPolicy:
    """Limits of every call to one upstream; `from_config` in the connectors reads them per upstream."""

    deadline: float = DEADLINE
    connect_timeout: float = CONNECT_TIMEOUT
    max_bytes: int = MAX_BYTES
    max_in_flight: int = MAX_IN_FLIGHT


@dataclass(frozen=True)
class Answer:
    """An upstream's answer, read whole (within the size cap). Header names are lower case."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def max_age(self) -> float:
        return cache_lifetime(self.headers)

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not (or nests too deeply, or holds a lone surrogate)."""
        return json_input.loads(self.body.decode("utf-8"))


DEFAULT_POLICY = FetchPolicy()


class ServerSlots:
    """The slots of upstream calls in flight, per upstream server (scheme, host and port).

    Upstreams `claim` their server's slots while the configuration is read; the pool is made on first use
    with the smallest cap any of them asked for. The lock guards only that bookkeeping, never a call."""

    def __init__(self) -> None:
        self._caps: dict[str, int] = {}
        self._pools: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()

    def claim(self, url: str, cap: int) -> str:
        server = server_of(url)
        with self._lock:
            self._caps[server] = min(cap, self._caps.get(server, cap))
        return server

    def pool(self, server: str) -> threading.BoundedSemaphore:
        with self._lock:
            if server not in self._pools:
                self._pools[server] = threading.BoundedSemaphore(self._caps.get(server, MAX_IN_FLIGHT))
            return self._pools[server]

    def cap(self, server: str) -> int:
        return self._caps.get(server, MAX_IN_FLIGHT)


def server_of(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


class UpstreamClient:
    """HTTP calls to one upstream, each under `policy`'s deadline, size cap and the server's slots.

    `name` is the upstream's display name, used in the (user-facing, audited) error reasons."""

    def __init__(
        self,
        name: str,
        home_url: str,
        policy: FetchPolicy = DEFAULT_POLICY,
        slots: ServerSlots | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.name, self.policy, self._clock = name, policy, clock
        self.slots = slots or ServerSlots()
        self.server = self.slots.claim(home_url, policy.max_in_flight)
        self._idle: dict[tuple, list[http.client.HTTPConnection]] = {}
        self._idle_lock = threading.Lock()

    def get(self, url: str, what: str, headers: Mapping[str, str] | None = None) -> Answer:
        return self.call("GET", url, what, headers=headers)

    def post_form(self, url: str, what: str, form: bytes, headers: Mapping[str, str] | None = None) -> Answer:
        headers = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        return self.call("POST", url, what, body=form, headers=headers)

    def get_json(self, url: str, what: str) -> dict:
        """A JSON object served with 200; UpstreamUnavailable (or a subclass) otherwise."""
        answer = self.get(url, what, {"Accept": "application/json"})
        if answer.status != 200:
            raise UpstreamUnavailable(f"{self.name} answered HTTP {answer.status} ({what}).")
        return self.json_object(answer, what)

    def json_object(self, answer: Answer, what: str) -> dict:
        try:
            document = answer.json()
        except ValueError:
            raise UpstreamUnavailable(f"{self.name} answered garbage ({what} is not JSON).") from None
        if not isinstance(document, dict):
            raise UpstreamUnavailable(f"{self.name} answered garbage ({what} is not a JSON object).")
        return document

    def call(
        self, method: str, url: str, what: str, *, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> Answer:
        """One call; a 3xx answer is an error (never followed). Any other status is the caller's to judge."""
        slots = self.slots.pool(self.server)
        if not slots.acquire(timeout=SLOT_WAIT):
            raise UpstreamBusy(
                f"Too many sign-ins are waiting for {self.name} right now ({what}); try again in a minute."
            )
        try:
            answer = self._exchange(method, url, what, body, headers or {})
        finally:
            slots.release()
        if 300 <= answer.status < 400:
            raise UpstreamUnavailable(
                f"{self.name} answered with a redirect, which the broker does not follow ({what})."
            )
        return answer

    def _exchange(self, method: str, url: str, what: str, body: bytes | None, headers: Mapping[str, str]) -> Answer:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UpstreamUnavailable(f"{self.name}: the {what} address is not an http(s) URL.")
        deadline = self._clock() + self.policy.deadline
        watchdog = _Watchdog(self.policy.deadline)
        origin = (parts.scheme, parts.hostname, parts.port)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # The request ID of the sign-in that makes the call: the IdP logs it too (sso_common/request_id.py).
        all_headers = {"User-Agent": USER_AGENT, **outgoing_headers(), **headers}
        try:
            connection, reused = self._idle_connection(origin), True
            if connection is None:
                connection, reused = self._connect(origin, watchdog, deadline), False
            while True:
                try:
                    answer, keep = self._send(connection, watchdog, deadline, method, path, body, all_headers)
                except _STALE:
                    connection.close()
                    if not reused or watchdog.fired:
                        raise
                    connection, reused = self._connect(origin, watchdog, deadline), False
                    continue
                except BaseException:
                    connection.close()
                    raise
                if keep:
                    self._keep(origin, connection)
                else:
                    connection.close()
                return answer
        except _TooLarge:
            raise UpstreamUnavailable(f"{self.name} answered more than the broker accepts ({what}).") from None
        except TimeoutError:
            raise self._late(what) from None
        except (OSError, http.client.HTTPException, ValueError) as error:
            if watchdog.fired:
                raise self._late(what) from None
            raise UpstreamUnavailable(f"{self.name} is unreachable ({what}: {type(error).__name__}).") from None
        finally:
            watchdog.cancel()

    def _connect(self, origin: tuple, watchdog: _Watchdog, deadline: float) -> http.client.HTTPConnection:
        scheme, host, port = origin
        timeout = min(self.policy.connect_timeout, self.policy.deadline)
        connection: http.client.HTTPConnection
        if scheme == "https":
            connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=_TLS)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        watchdog.watch_connecting(connection)
        try:
            connection.connect()
        except BaseException:
            connection.close()
            raise
        if deadline - self._clock() <= 0 or connection.sock is None:
            connection.close()
            raise TimeoutError
        return connection

    def _send(
        self,
        connection: http.client.HTTPConnection,
        watchdog: _Watchdog,
        deadline: float,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
    ) -> tuple[Answer, bool]:
        """One request and its answer on `connection`; and whether the connection may be kept for the next call."""
        sock = connection.sock
        remaining = deadline - self._clock()
        if remaining <= 0 or sock is None:
            raise TimeoutError
        watchdog.watch(sock)  # the response keeps reading it after the connection lets go
        sock.settimeout(remaining)  # no single read outlasts the deadline either
        connection.request(method, path, body=body, headers=dict(headers))
        response = connection.getresponse()
        announced = response.getheader("Content-Length")
        if announced and announced.isdigit() and int(announced) > self.policy.max_bytes:
            raise _TooLarge
        content = response.read(self.policy.max_bytes + 1)
        if len(content) > self.policy.max_bytes:
            raise _TooLarge
        if watchdog.fired:  # the cut looked like the end of a body without a length
            raise TimeoutError
        keep = response.isclosed() and not response.will_close and connection.sock is not None
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, content), keep

    def _idle_connection(self, origin: tuple) -> http.client.HTTPConnection | None:
        """A kept-alive connection to `origin`, the most recently used first; one the server closed (or wrote
        to unasked) is dropped."""
        with self._idle_lock:
            idle = self._idle.get(origin)
            while idle:
                connection = idle.pop()
                sock = connection.sock
                if sock is not None and not _readable(sock):
                    return connection
                connection.close()
        return None

    def _keep(self, origin: tuple, connection: http.client.HTTPConnection) -> None:
        with self._idle_lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < self.slots.cap(self.server):
                idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        """Close the idle connections."""
        with self._idle_lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    def _late(self, what: str) -> UpstreamTimeout:
        return UpstreamTimeout(f"{self.name} did not answer in time ({what}, {self.policy.deadline:g} s).")


class _TooLarge(Exception):
    pass


def _readable(sock: socket.socket) -> bool:
    """An idle kept-alive socket with something to read: the server closed it (or broke the protocol)."""
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


class _Watchdog:
    """Shuts the connection's socket down when the deadline passes: a read blocked on a trickling server
    returns at once, whatever its own timeout. Every watchdog of the process is served by one thread
    (`_Deadlines`), not a timer thread per call."""

    def __init__(self, seconds: float):
        self.fired = self.cancelled = False
        self._socket: socket.socket | None = None
        self._connecting: http.client.HTTPConnection | None = None
        _DEADLINES.add(time.monotonic() + seconds, self)

    def watch_connecting(self, connection: http.client.HTTPConnection) -> None:
        """A connection being opened: its socket is cut if the deadline passes during connect."""
        self._connecting, self._socket = connection, None
        if self.fired:
            self._cut()

    def watch(self, sock: socket.socket) -> None:
        """The connected socket: http.client drops its own reference once a response will close it."""
        self._socket = sock
        if self.fired:
            self._cut()

    def fire(self) -> None:
        self.fired = True
        self._cut()

    def _cut(self) -> None:
        sock = self._socket or (self._connecting.sock if self._connecting is not None else None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self.cancelled = True
        self._socket = self._connecting = None


class _Deadlines:
    """One daemon thread that fires the watchdogs whose deadline has passed (a heap by deadline)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Watchdog]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, when: float, watchdog: _Watchdog) -> None:
        with self._wake:
            heapq.heappush(self._heap, (when, next(self._order), watchdog))
            if self._thread is None or not self._thread.is_alive():  # first use, or after a fork
                self._thread = threading.Thread(target=self._run, name="upstream-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is watchdog:
                self._wake.notify()

    def _run(self) -> None:
        while True:
            due = []
            with self._wake:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].cancelled or self._heap[0][0] <= now):
                    _, _, watchdog = heapq.heappop(self._heap)
                    if not watchdog.cancelled:
                        due.append(watchdog)
                if not due:
                    self._wake.wait(self._heap[0][0] - now if self._heap else None)
            for watchdog in due:
                watchdog.fire()


_DEADLINES = _Deadlines()


def cache_lifetime(
    headers: Mapping[str, str],
    *,
    default: float = CACHE_DEFAULT,
    floor: float = CACHE_FLOOR,
    ceiling: float = CACHE_CEILING,
) -> float:
    """How long to keep a document, from its Cache-Control max-age (less its Age), within [floor, ceiling]."""
    control = headers.get("cache-control", "")
    if _NO_CACHE.search(control):
        return floor
    match = _MAX_AGE.search(control)
    if not match:
        return default
    age = headers.get("age", "0").strip()
    lifetime = int(match.group(1)) - (int(age) if age.isdigit() else 0)
    return max(floor, min(ceiling, float(lifetime)))


T = TypeVar("T")


@dataclass(frozen=True)
class _Snapshot(Generic[T]):
    value: T
    fetched_at: float
    expires_at: float


@dataclass
class CachedDocument(Generic[T]):
    """A document from an upstream, kept for the lifetime its loader returns.

    `load()` fetches and returns (document, seconds to keep it); it runs outside any lock. A failed load
    is not cached: the next call tries again. While one thread refreshes an expired document, the others
    keep the previous one rather than wait."""

    load: Callable[[], tuple[T, float]]
    clock: Callable[[], float] = time.monotonic
    _snapshot: _Snapshot[T] | None = field(default=None, init=False)
    _refreshing: threading.Lock = field(default_factory=threading.Lock, init=False)

    def get(self) -> T:
        snapshot = self._snapshot
        if snapshot is not None and self.clock() < snapshot.expires_at:
            return snapshot.value
        if snapshot is not None and not self._refreshing.acquire(blocking=False):
            return snapshot.value  # another thread is fetching it: keep the previous one meanwhile
        try:
            return self._fetch()
        finally:
            if snapshot is not None:
                self._refreshing.release()

    def refresh(self, min_interval: float) -> T | None:
        """Fetch again now (an unknown key ID, a failed signature), unless the last fetch is younger than
        `min_interval`: then None, so made-up key IDs cannot make the broker hammer the upstream."""
        snapshot = self._snapshot
        if snapshot is not None and self.clock() - snapshot.fetched_at < min_interval:
            return None
        return self._fetch()

    def _fetch(self) -> T:
        value, lifetime = self.load()
        now = self.clock()
        self._snapshot = _Snapshot(value, now, now + lifetime)
        return value
