"""Keys, certificates and secrets are made once, even when processes start together (the portal and
`broker provision` at the demo's start): a second key would sign what the first one's metadata does not
vouch for."""

from __future__ import annotations

import stat
import threading

from cryptography.hazmat.primitives import serialization

from sso_common.keys import create_private, load_or_create_signing_identity, write_private
from sso_common.web import load_or_create_secret


def together(count: int, action):
    results: list = [None] * count
    barrier = threading.Barrier(count, timeout=30)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = action()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_racing_creators_end_with_one_key_and_one_certificate(tmp_path):
    identities = together(8, lambda: load_or_create_signing_identity(tmp_path / "keys", "idp", "idp.example"))
    public = {
        i.key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
        for i in identities
    }
    assert len(public) == 1
    assert len({i.certificate_pem for i in identities}) == 1
    again = load_or_create_signing_identity(tmp_path / "keys", "idp", "idp.example")
    assert again.certificate_pem == identities[0].certificate_pem


def test_racing_creators_end_with_one_secret(tmp_path):
    assert len(set(together(8, lambda: load_or_create_secret(tmp_path / "secret.bin")))) == 1


def test_create_private_never_replaces_and_write_private_does(tmp_path):
    path = tmp_path / "folder" / "file"
    assert create_private(path, b"first") is True
    assert create_private(path, b"second") is False and path.read_bytes() == b"first"
    write_private(path, b"third")
    assert path.read_bytes() == b"third"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["file"]  # no temporary left behind


def test_replicas_starting_together_on_one_folder_share_one_key_ring(tmp_path):
    """Replicas of the IdP share their instance folder (compose: a volume): the first rings made at once
    converge on one, and no stray key is left behind."""
    import threading

    from sso_common.keys import KeyRing

    rings: list = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        rings.append(KeyRing(tmp_path / "oidc-keys"))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    reread = [kid for kid, _ in KeyRing(tmp_path / "oidc-keys").keys]
    assert len(rings) == 8 and all([kid for kid, _ in ring._load()] == reread for ring in rings)
    assert sorted(path.stem for path in (tmp_path / "oidc-keys").glob("*.key")) == sorted(reread)
