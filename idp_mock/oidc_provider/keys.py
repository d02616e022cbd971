"""ID token signing keys: a KeyRing in the instance folder, re-read by every worker after a rotation.

`idp-mock rotate-keys` rewrites keyring.json; each worker notices the new file (mtime and inode) on its
next use and reloads, so a rotation needs no restart. The previous key stays in the JWKS, so tokens
signed before the rotation still verify.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from joserfc.jwk import Key, KeySet, KeySetSerialization, RSAKey

from sso_common.keys import KeyRing

ALGORITHM = "RS256"


def keys_dir(settings) -> Path:
    return settings.instance_dir / "oidc-keys"


def rotate_signing_keys(settings) -> str:
    """Make a new key active (the previous one stays published); returns its kid."""
    return KeyRing(keys_dir(settings)).rotate()


@dataclass(frozen=True)
class _Loaded:
    active_kid: str
    private: KeySet
    public: KeySet


class SigningKeys:
    def __init__(self, directory: Path):
        self._directory = directory
        self._index = directory / "keyring.json"
        self._lock = threading.Lock()
        self._version: tuple[int, int] | None = None
        # Creates the first two keys on first start (before the server forks its workers), and loads them once.
        self._current(KeyRing(directory))

    def _current(self, ring: KeyRing | None = None) -> _Loaded:
        stat = self._index.stat()
        version = (stat.st_mtime_ns, stat.st_ino)
        if version != self._version:
            with self._lock:
                if version != self._version:
                    ring = ring or KeyRing(self._directory)
                    # The keys as loaded (loading a PEM checks the key: ~35 ms each; 7 loads made a start 0.25 s)
                    keys: list[Key] = [
                        RSAKey(key, key, {"kid": kid, "use": "sig", "alg": ALGORITHM}) for kid, key in ring.keys
                    ]
                    private = KeySet(keys)
                    self._loaded = _Loaded(
                        ring.active[0], private, KeySet.import_key_set(private.as_dict(private=False))
                    )
                    self._version = version
        return self._loaded

    @property
    def active_kid(self) -> str:
        return self._current().active_kid

    @property
    def private_keys(self) -> KeySet:
        """All keys: joserfc picks the one named by the token header's kid."""
        return self._current().private

    @property
    def public_keys(self) -> KeySet:
        return self._current().public

    def jwks(self) -> KeySetSerialization:
        return self.public_keys.as_dict()
