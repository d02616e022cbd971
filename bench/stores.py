"""The cost of one state-store operation, per backend: what a login's store operations cost (the IdP makes about
fifteen at the password POST, sso_common/store and tests/idp_mock/test_store_operations.py).

    .venv/bin/python -m bench.stores                 # memory and SQLite
    .venv/bin/python -m bench.stores --engines       # also Redis and PostgreSQL (started here, Debian packages)

For each operation of the StateStore contract (put, get, add, incr, take), N operations on distinct keys with a
record the size of an OIDC grant, from one thread: the CPU of this process per operation (what the app's worker
spends; the engine's own CPU for Redis and PostgreSQL is not in it) and the wall time per operation.
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from sso_common.store import StateStore
from sso_common.store.registry import open_state_store

RECORD = {  # about an OIDC grant's size
    "client_id": "access-portal",
    "redirect_uri": "http://localhost:8000/login/example-corp-oidc/callback",
    "scope": "openid email profile groups",
    "nonce": "n" * 22,
    "code_challenge": "c" * 43,
    "subject": "employee-0042",
    "auth_time": 1_790_000_000,
}
OPERATIONS: dict[str, Callable[[StateStore, str], object]] = {
    "put": lambda store, key: store.put("bench", key, RECORD, 600),
    "get": lambda store, key: store.get("bench", key),
    "add": lambda store, key: store.add("bench_marker", key, {}, 600),
    "incr": lambda store, key: store.incr("bench_count", key, 600),
    "take": lambda store, key: store.take("bench", key),
}


@contextmanager
def backends(engines: bool) -> Iterator[dict[str, str]]:
    """Store URLs by name; with `engines`, Redis and PostgreSQL started for the run and stopped after it."""
    folder = Path(tempfile.mkdtemp(prefix="sso-bench-stores-"))
    urls = {"memory": "memory://", "sqlite": f"sqlite:///{folder / 'state.db'}"}
    with ExitStack() as stack:
        if engines:
            from devstack.engines import PostgresServer, RedisServer

            redis = RedisServer.start(folder / "redis")
            stack.callback(redis.stop)
            postgres = PostgresServer.start()
            stack.callback(postgres.stop)
            urls.update(redis=redis.url(), postgres=postgres.url(schema="bench"))
        yield urls


def measure(store: StateStore, count: int) -> dict[str, tuple[float, float]]:
    """Per operation: (CPU microseconds, wall microseconds), each over `count` distinct keys."""
    keys = [secrets.token_urlsafe(16) for _ in range(count)]
    figures = {}
    for name, operation in OPERATIONS.items():
        cpu, wall = time.process_time(), time.perf_counter()
        for key in keys:
            operation(store, key)
        figures[name] = ((time.process_time() - cpu) * 1e6 / count, (time.perf_counter() - wall) * 1e6 / count)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stores", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="operations of each kind (default 5000)")
    parser.add_argument("--engines", action="store_true", help="also Redis and PostgreSQL")
    args = parser.parse_args(argv)
    print("| backend | " + " | ".join(f"{name} us CPU (wall)" for name in OPERATIONS) + " |")
    print("|---|" + "---|" * len(OPERATIONS))
    with backends(args.engines) as urls:
        for name, url in urls.items():
            figures = measure(open_state_store(url), args.count)
            cells = " | ".join(f"{cpu:.1f} ({wall:.1f})" for cpu, wall in figures.values())
            print(f"| {name} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
