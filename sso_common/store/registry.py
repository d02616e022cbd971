"""Store backends by URL scheme, one URL per contract, parsed once for every app.

A deployment names one URL per contract (`state`, `directory`, `audit`, `changes`) under `stores:` in its config
file. The scheme picks the backend (`sqlite:///PATH`, `memory://`); a backend serves the contracts it
registers. Adding a backend is one module that implements the contracts, passes the conformance suites
in `sso_common.store.conformance`, and calls `register_backend`.

Shared engines for replicas: `redis://HOST:PORT/DB` (state), `postgresql://USER:PASSWORD@HOST:PORT/DATABASE
?schema=NAME` (every contract). An empty URL (`state: ${BROKER_STATE_URL:-}` with the variable unset) means
the default. `lasting` is a second StateStore URL for the kinds that must outlive a restart of the state
engine (`sso_common.store.routing`); empty, they stay in the state store. URLs in messages are redacted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

from sso_common.config import Node
from sso_common.store import AuditLog, ChangeLog, DirectoryStore, StateStore
from sso_common.store.errors import redact_url

CONTRACTS = ("state", "directory", "audit", "changes")
ROLES = {"lasting": "state"}  # a `stores:` key that is not a contract -> the contract its store serves


@dataclass(frozen=True)
class Backend:
    """How to open each contract a backend serves, from the whole URL."""

    scheme: str
    example: str  # shown in configuration errors, e.g. "sqlite:///PATH"
    openers: Mapping[str, Callable[[str], Any]] = field(default_factory=dict)


BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> None:
    unknown = set(backend.openers) - set(CONTRACTS)
    if unknown:
        raise ValueError(f"unknown store contract {sorted(unknown)[0]!r} (known: {', '.join(CONTRACTS)})")
    BACKENDS[backend.scheme] = backend


def _backend_for(contract: str, url: str) -> Backend:
    backend = BACKENDS.get(urlsplit(url).scheme)
    if backend is None or contract not in backend.openers:
        choices = [b.example for b in BACKENDS.values() if contract in b.openers]
        raise ValueError(f"unsupported {contract} store URL {redact_url(url)!r} (use {' or '.join(choices)})")
    return backend


def open_store(contract: str, url: str) -> Any:
    return _backend_for(contract, url).openers[contract](url)


def open_state_store(url: str, *, lasting_url: str = "", lasting_kinds: frozenset[str] = frozenset()) -> StateStore:
    """The state store at `url`; with a `lasting_url` other than `url`, one that keeps `lasting_kinds` there."""
    store = cast(StateStore, open_store("state", url))
    if not lasting_url or lasting_url == url or not lasting_kinds:
        return store
    from sso_common.store.routing import RoutedStateStore

    return RoutedStateStore(store, cast(StateStore, open_store("state", lasting_url)), lasting_kinds)


def open_directory_store(url: str) -> DirectoryStore:
    return cast(DirectoryStore, open_store("directory", url))


def open_audit_log(url: str) -> AuditLog:
    return cast(AuditLog, open_store("audit", url))


def open_change_log(url: str) -> ChangeLog:
    return cast(ChangeLog, open_store("changes", url))


def parse_store_urls(node: Node, defaults: Mapping[str, str]) -> dict[str, str]:
    """The `stores:` mapping of a config file: one URL per contract of `defaults` (which also gives each
    contract's default; an empty value means it). A scheme no backend serves for that contract is a
    ConfigError naming the key. A key whose default is "" (`lasting`) may stay empty: not used."""
    node.only_keys(*defaults)
    urls = {}
    for name, default in defaults.items():
        child = node.child(name, default)
        url = child.string().strip() if child.value not in (None, "") else default
        url = url or default
        if url:
            try:
                _backend_for(ROLES.get(name, name), url)
            except ValueError as problem:
                raise child.error(str(problem)) from None
        urls[name] = url
    return urls


def _sqlite_path(url: str) -> str:
    if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
        raise ValueError(f"a SQLite store URL is sqlite:///PATH, not {url!r}")
    return url[len("sqlite:///") :]


def _redis_state(url: str) -> StateStore:
    from sso_common.store.redis_store import RedisStateStore

    return RedisStateStore(url)


def _postgres(contract: str) -> Callable[[str], Any]:
    def opener(url: str) -> Any:
        from sso_common.store import postgres

        name = {
            "state": "PostgresStateStore",
            "directory": "PostgresDirectoryStore",
            "audit": "PostgresAuditLog",
            "changes": "PostgresChangeLog",
        }[contract]
        return getattr(postgres, name)(url)

    return opener


def _register_builtin() -> None:
    from sso_common.store import memory, sqlite

    register_backend(
        Backend(
            "memory",
            "memory://",
            {
                "state": lambda url: memory.MemoryStateStore(),
                "directory": lambda url: memory.MemoryDirectoryStore(),
                "audit": lambda url: memory.MemoryAuditLog(),
                "changes": lambda url: memory.MemoryChangeLog(),
            },
        )
    )
    register_backend(
        Backend(
            "sqlite",
            "sqlite:///PATH",
            {
                "state": lambda url: sqlite.SQLiteStateStore(_sqlite_path(url)),
                "directory": lambda url: sqlite.SQLiteDirectoryStore(_sqlite_path(url)),
                "audit": lambda url: sqlite.SQLiteAuditLog(_sqlite_path(url)),
                "changes": lambda url: sqlite.SQLiteChangeLog(_sqlite_path(url)),
            },
        )
    )
    # Shared engines for replicas; their client libraries are imported when a URL names them.
    for scheme in ("redis", "rediss"):
        register_backend(Backend(scheme, f"{scheme}://HOST:PORT/DB", {"state": _redis_state}))
    for scheme in ("postgresql", "postgres"):
        register_backend(
            Backend(
                scheme,
                f"{scheme}://USER:PASSWORD@HOST:PORT/DATABASE",
                {contract: _postgres(contract) for contract in CONTRACTS},
            )
        )


_register_builtin()
