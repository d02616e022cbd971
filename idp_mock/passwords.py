"""Password hashing: argon2id at OWASP's first recommended cost (m=19 MiB, t=2, p=1).

Only hashes are ever stored. Unknown users are checked against a dummy hash so that the answer
takes the same time whether or not the user exists (no user enumeration by timing).

Verifications run on a small pool of hashing threads per process (IDP_HASHING_THREADS, default 1; one
worker process per core), not on every request thread at once: argon2id is memory-hard (19 MiB per
verification), so more verifications at once than cores only thrash the caches (fewer logins per
second), and each request thread that ran one kept its 19 MiB in its own malloc arena (RSS grew by
that much per thread). Queued logins wait their turn; the cost of each verification is unchanged.
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16)


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def is_valid_hash(encoded: str) -> bool:
    return isinstance(encoded, str) and encoded.startswith("$argon2id$")


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return HASHER.hash("not-a-real-password-only-for-timing")


_HASHING_THREADS = max(1, int(os.environ.get("IDP_HASHING_THREADS", "1")))
_pool_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None  # (pid, pool): threads do not survive a fork


def _hashing_pool() -> ThreadPoolExecutor:
    global _pool
    pool = _pool
    if pool is None or pool[0] != os.getpid():
        with _pool_lock:
            if _pool is None or _pool[0] != os.getpid():
                _pool = (os.getpid(), ThreadPoolExecutor(_HASHING_THREADS, thread_name_prefix="argon2"))
            pool = _pool
    return pool[1]


def verify_password(encoded: str | None, password: str) -> bool:
    """True when `password` matches; a missing hash still costs one full verification."""
    return _hashing_pool().submit(_verify, encoded, password).result()


def _verify(encoded: str | None, password: str) -> bool:
    try:
        return HASHER.verify(encoded or _dummy_hash(), password) and encoded is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
