"""Signing keys and certificates, generated on first start into the instance folder and persisted.

Files are written atomically with mode 0600, so a crash mid-write never leaves half a key and other
users of the machine cannot read them.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def private_directory(path: Path) -> Path:
    """Create (if needed) a folder only its owner can enter: instance folders hold keys and state. Every
    folder created on the way is 0700 too (Path.mkdir gives missing parents the default mode). The folder
    itself, if it exists already and is ours, is made 0700 (an older version left some 0755); its parents,
    which may be anyone's (/var/lib, a temporary folder), are left as they are."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by another process
            continue
        os.chmod(folder, 0o700)  # whatever the umask
    if not path.is_dir():
        raise NotADirectoryError(path)
    status = path.stat()
    if status.st_uid == os.getuid() and status.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def private_log(path: Path, append: bool = True) -> int:
    """A log file only its owner can read (0600, also when it existed with a wider mode), in a private
    folder, opened for appending (or emptied): a file descriptor. Logs may hold usernames and addresses."""
    private_directory(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), 0o600)
    if os.fstat(fd).st_uid == os.getuid():
        os.fchmod(fd, 0o600)
    return fd


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` in one step (readers never see half a file), readable by its owner only."""
    _place_private(path, data, exclusive=False)


def create_private(path: Path, data: bytes) -> bool:
    """Write `path` only if it does not exist yet, in one step: of processes creating the same file at
    once (the portal and `broker provision` at the demo's start, say), exactly one wins, and the others
    must read the winner's. True when this call created it."""
    return _place_private(path, data, exclusive=True)


def _place_private(path: Path, data: bytes, exclusive: bool) -> bool:
    private_directory(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if not exclusive:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # fails when the file exists: no window between a check and a write
        except FileExistsError:
            return False
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)


def generate_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_rsa_key(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} holds a {type(key).__name__}, not an RSA key")
    return key


def load_or_create_rsa_key(path: Path) -> rsa.RSAPrivateKey:
    if path.exists():
        return load_rsa_key(path)
    key = generate_rsa_key()
    return key if create_private(path, private_key_pem(key)) else load_rsa_key(path)


def self_signed_certificate(key: rsa.RSAPrivateKey, common_name: str, days: int) -> x509.Certificate:
    """A certificate of `key` signed by itself, valid from a day ago for `days` (SHA-256, the name cut to 64)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )


def load_or_create_certificate(
    path: Path, key: rsa.RSAPrivateKey, common_name: str, days: int = 3650
) -> x509.Certificate:
    """A self-signed certificate for `key`, as SAML metadata carries (trust comes from the metadata).
    Made once: a file certifying another key (the key was replaced) is replaced."""
    existing = _certificate_for(path, key)
    if existing is not None:
        return existing
    cert = self_signed_certificate(key, common_name, days)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    if path.exists():  # made meanwhile by a racing creator (kept), or certifying another key (replaced)
        made = _certificate_for(path, key)
        if made is not None:
            return made
        write_private(path, pem)
    elif not create_private(path, pem):  # another process made it meanwhile: theirs, for the same key
        return _certificate_for(path, key) or cert
    return cert


def _certificate_for(path: Path, key: rsa.RSAPrivateKey) -> x509.Certificate | None:
    """The certificate in `path` if it certifies `key`."""
    if not path.exists():
        return None
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    public = cert.public_key()
    if isinstance(public, rsa.RSAPublicKey) and public.public_numbers() == key.public_key().public_numbers():
        return cert
    return None


@dataclass(frozen=True)
class SigningIdentity:
    """A loaded RSA key and its certificate (keep the loaded object: re-parsing PEM per sign is slow)."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def certificate_base64(self) -> str:
        """The DER certificate in base64 on one line, as SAML metadata's X509Certificate holds it."""
        return "".join(line for line in self.certificate_pem.splitlines() if "-----" not in line)

    @property
    def key_pem(self) -> str:
        return private_key_pem(self.key).decode()


def load_or_create_signing_identity(directory: Path, name: str, common_name: str) -> SigningIdentity:
    key = load_or_create_rsa_key(directory / f"{name}.key")
    cert = load_or_create_certificate(directory / f"{name}.crt", key, common_name)
    return SigningIdentity(key, cert)


class KeyRing:
    """Rotating JWT signing keys: the first is active (signs), the second is the previous one,
    still published so tokens and cached JWKS keep working through a rotation."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._index = directory / "keyring.json"
        if not self._index.exists():
            self._init()
        self.keys = self._load()

    def _init(self) -> None:
        """The first two keys. Replicas sharing the folder may start together: the index is created exclusively,
        so one ring wins and the others drop their keys and load it."""
        kids = []
        for _ in range(2):
            kid = secrets.token_urlsafe(12)
            write_private(self.directory / f"{kid}.key", private_key_pem(generate_rsa_key()))
            kids.append(kid)
        if not create_private(self._index, json.dumps({"kids": kids}).encode()):
            for kid in kids:
                (self.directory / f"{kid}.key").unlink(missing_ok=True)

    def _load(self) -> list[tuple[str, rsa.RSAPrivateKey]]:
        kids = json.loads(self._index.read_text())["kids"]
        return [(kid, load_rsa_key(self.directory / f"{kid}.key")) for kid in kids]

    @property
    def active(self) -> tuple[str, rsa.RSAPrivateKey]:
        return self.keys[0]

    def rotate(self) -> str:
        """Make a new key active, keep the current one as previous, retire the older one."""
        kid = secrets.token_urlsafe(12)
        write_private(self.directory / f"{kid}.key", private_key_pem(generate_rsa_key()))
        old = [k for k, _ in self.keys]
        write_private(self._index, json.dumps({"kids": [kid, old[0]]}).encode())
        for retired in old[1:]:
            (self.directory / f"{retired}.key").unlink(missing_ok=True)
        self.keys = self._load()
        return kid
