"""Password hashing: argon2id at OWASP's first recommended cost (m=19 MiB, t=2, p=1).

Only hashes are ever stored. Unknown users are checked against a dummy hash so that the answer
takes the same time whether or not the user exists (no user enumeration by timing).
"""

from __future__ import annotations

import functools

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


def verify_password(encoded: str | None, password: str) -> bool:
    """True when `password` matches; a missing hash still costs one full verification."""
    try:
        return HASHER.verify(encoded or _dummy_hash(), password) and encoded is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
