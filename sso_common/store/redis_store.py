"""Redis (or Valkey) backend of the StateStore: the shared state of replicas, with Redis's own expiry.

`redis://[:PASSWORD@]HOST:PORT/DB` (or `rediss://` for TLS), one database number per service (the
compose stack: the portal's state in 0, the IdP's in 1). redis-py's pool is fork-safe (each worker opens
its own connections after the fork).

Every operation is one atomic Redis command: `put` SET PX, `add` SET NX PX (a replay cache's "first one
wins"), `take` GETDEL (single use), `delete` DEL, `incr` a two-command Lua script (INCRBY, then PEXPIRE only
when the key has no expiry yet: the window starts at the first increment). Expiry is Redis's own, on the
Redis server's clock: replicas never disagree about it, and `purge_expired` has nothing to do. The store
therefore ignores the apps' clock; the conformance suite checks its expiry in real time with short TTLs.

Failures: a command that cannot reach Redis is retried twice on a new connection (50 and 100 ms apart: a
pooled connection that died with a Redis restart is replaced at once), never after a timeout (the command
may have run: INCRBY or GETDEL must not run twice); then `StoreUnavailable`, which the web layer answers
with a 503 and Retry-After. What a restart without persistence loses is in docs/architecture.md ("Stores").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

from sso_common.store import hashed_key
from sso_common.store.errors import StoreUnavailable, redact_url, scrub

T = TypeVar("T")

CONNECT_TIMEOUT = 1.0  # seconds to open a connection (loopback or a LAN: milliseconds when Redis is up)
COMMAND_TIMEOUT = 2.0  # seconds for an answer; Redis answers these commands in microseconds
KEY_PREFIX = "sso:"

# KEYS[1] the counter, ARGV[1] the amount, ARGV[2] the window in ms. A new key (INCRBY creates it without an
# expiry: PTTL -1) gets the window; an existing one keeps the expiry of its first increment.
_INCR = """
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return count
"""


def _milliseconds(ttl: float) -> int:
    return max(1, round(ttl * 1000))


class RedisStateStore:
    """StateStore on one Redis database. `clock` is accepted for symmetry with the other backends and
    ignored: entries expire on Redis's clock."""

    what = "the state store (Redis)"

    def __init__(self, url: str, clock: Callable[[], float] | None = None) -> None:
        self._url = url
        try:
            self._redis = redis.Redis.from_url(
                url,
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=COMMAND_TIMEOUT,
                retry=Retry(ExponentialBackoff(cap=0.1, base=0.05), 2, supported_errors=(RedisConnectionError,)),
                retry_on_timeout=False,
                client_name="sso-login-broker",
            )
        except ValueError as problem:
            raise ValueError(f"bad Redis URL {redact_url(url)}: {scrub(str(problem), url)}") from None
        self._incr = self._redis.register_script(_INCR)

    def __repr__(self) -> str:
        return f"RedisStateStore({redact_url(self._url)!r})"

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        try:
            yield
        except ResponseError:
            raise  # a command Redis refused (a bug here), not an outage
        except RedisError as error:
            raise StoreUnavailable(self.what, f"{type(error).__name__}: {scrub(str(error), self._url)}") from None

    def _call(self, command: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._reaching():
            return command(*args, **kwargs)

    @staticmethod
    def _key(kind: str, key: str) -> str:
        return KEY_PREFIX + hashed_key(kind, key)

    @staticmethod
    def _value(raw: Any) -> dict | None:
        if raw is None:
            return None
        if raw[:1] != b"{":  # a counter of `incr`: Redis keeps it as a number
            return {"count": int(raw)}
        return dict(json.loads(raw))

    def put(self, kind: str, key: str, value: dict, ttl: float) -> None:
        if ttl <= 0:
            self.delete(kind, key)
            return
        self._call(self._redis.set, self._key(kind, key), json.dumps(value), px=_milliseconds(ttl))

    def add(self, kind: str, key: str, value: dict, ttl: float) -> bool:
        if ttl <= 0:  # stored and expired at once, as in the other backends: only a live entry refuses
            return self.get(kind, key) is None
        return bool(
            self._call(self._redis.set, self._key(kind, key), json.dumps(value), px=_milliseconds(ttl), nx=True)
        )

    def get(self, kind: str, key: str) -> dict | None:
        return self._value(self._call(self._redis.get, self._key(kind, key)))

    def take(self, kind: str, key: str) -> dict | None:
        return self._value(self._call(self._redis.getdel, self._key(kind, key)))

    def delete(self, kind: str, key: str) -> None:
        self._call(self._redis.delete, self._key(kind, key))

    def incr(self, kind: str, key: str, ttl: float, amount: int = 1) -> int:
        return int(self._call(self._incr, keys=[self._key(kind, key)], args=[int(amount), _milliseconds(ttl)]))

    def purge_expired(self) -> int:
        """Nothing to do: Redis removes expired keys itself (and never returns one)."""
        return 0

    def ping(self) -> None:
        """StoreUnavailable unless Redis answers now (readiness)."""
        self._call(self._redis.ping)

    def close(self) -> None:
        self._redis.close()
