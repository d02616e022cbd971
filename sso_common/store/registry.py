"""Store backends by URL scheme, one URL per contract, parsed once for every app.

A deployment names one URL per contract (`state`, `directory`, `audit`) under `stores:` in its config
file. The scheme picks the backend (`sqlite:///PATH`, `memory://`); a backend serves the contracts it
registers. Adding a backend is one module that implements the contracts, passes the conformance suites
in `sso_common.store.conformance`, and calls `register_backend`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

from sso_common.config import Node
from sso_common.store import AuditLog, DirectoryStore, StateStore

CONTRACTS = ("state", "directory", "audit")


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
        raise ValueError(f"unsupported {contract} store URL {url!r} (use {' or '.join(choices)})")
    return backend


def open_store(contract: str, url: str) -> Any:
    return _backend_for(contract, url).openers[contract](url)


def open_state_store(url: str) -> StateStore:
    return cast(StateStore, open_store("state", url))


def open_directory_store(url: str) -> DirectoryStore:
    return cast(DirectoryStore, open_store("directory", url))


def open_audit_log(url: str) -> AuditLog:
    return cast(AuditLog, open_store("audit", url))


def parse_store_urls(node: Node, defaults: Mapping[str, str]) -> dict[str, str]:
    """The `stores:` mapping of a config file: one URL per contract of `defaults` (which also gives each
    contract's default). A scheme no backend serves for that contract is a ConfigError naming the key."""
    node.only_keys(*defaults)
    urls = {}
    for contract, default in defaults.items():
        child = node.child(contract, default)
        url = child.string()
        try:
            _backend_for(contract, url)
        except ValueError as problem:
            raise child.error(str(problem)) from None
        urls[contract] = url
    return urls


def _sqlite_path(url: str) -> str:
    if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
        raise ValueError(f"a SQLite store URL is sqlite:///PATH, not {url!r}")
    return url[len("sqlite:///") :]


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
            },
        )
    )


_register_builtin()
