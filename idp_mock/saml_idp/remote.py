"""Service providers described by their published metadata (`metadata_url` in config/idp.yaml).

The way real IdPs trust an SP's signing key: the SP publishes SAML metadata, the IdP reads it.
- Lazily: nothing is fetched at start-up, so the IdP starts whether or not the SP is up. The first
  request that needs the SP (its AuthnRequest or LogoutRequest, an IdP-initiated sign-in) fetches it.
- Briefly: connect and read timeouts of a few seconds, a deadline for the whole body, no redirects, no
  compression, at most MAX_METADATA_BYTES; then the hardened parser of run-time registration (no DTD,
  no entities, schema-checked). The metadata must name the configured entity ID.
- Cached per process for METADATA_TTL (shorter if the metadata's cacheDuration or validUntil says so),
  and fetched again when a request's signature does not verify with the cached certificate (the SP
  may have rotated its key), at most once per MIN_FORCED_REFRESH so badly signed requests cannot make
  the IdP fetch on every request.
- Failing closed: with no usable metadata a request from the SP gets a 503 page (never an unverified
  acceptance). A failed fetch is not retried for RETRY_AFTER_FAILURE seconds. When a due refresh fails,
  the last good metadata stays in use for at most MAX_STALE (and never past its validUntil).
The file stays authoritative for everything it declares (see config.py); metadata supplies the
certificates, and the ACS and SLO addresses only where the file has none. Where the file declares an
address the metadata does not list, the file's is used and a warning is logged.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

from idp_mock.errors import MetadataError, MetadataUnavailable
from idp_mock.saml_idp.config import ServiceProvider
from idp_mock.saml_idp.metadata import MAX_METADATA_BYTES, Validity, parse_sp_metadata_with_validity

log = logging.getLogger(__name__)

FETCH_TIMEOUT = (2.0, 3.0)  # seconds: connect, each read
FETCH_DEADLINE = 5.0  # seconds for the whole body
METADATA_TTL = 3600  # seconds a fetched copy is used before it is fetched again
RETRY_AFTER_FAILURE = 5  # seconds without a new attempt after a failed fetch
MIN_FORCED_REFRESH = 10  # seconds between refreshes caused by a signature that did not verify
MAX_STALE = 24 * 3600  # how long past its refresh time a copy may serve while the SP's metadata is down


def fetch_metadata(url: str) -> bytes:
    """The body of GET url: 200 only, no redirect, no Content-Encoding, bounded in size and time."""
    started = time.monotonic()
    try:
        with requests.get(
            url,
            timeout=FETCH_TIMEOUT,
            stream=True,
            allow_redirects=False,
            headers={"Accept": "application/samlmetadata+xml, application/xml;q=0.9", "Accept-Encoding": "identity"},
        ) as answer:
            if answer.status_code != 200:
                raise MetadataError(
                    f"HTTP {answer.status_code} (redirects are not followed)"
                    if answer.is_redirect
                    else f"HTTP {answer.status_code}"
                )
            if answer.headers.get("Content-Encoding", "identity").lower() != "identity":
                raise MetadataError("compressed answer (Content-Encoding), which is not accepted")
            body = bytearray()
            # read1: whatever has arrived (each wait bounded by the read timeout), so a server that
            # trickles bytes still meets the deadline.
            while chunk := answer.raw.read1(16 * 1024, decode_content=False):
                body += chunk
                if len(body) > MAX_METADATA_BYTES:
                    raise MetadataError(f"larger than {MAX_METADATA_BYTES // 1024} KiB")
                if time.monotonic() - started > FETCH_DEADLINE:
                    raise MetadataError("the answer took too long")
            return bytes(body)
    except requests.Timeout:
        raise MetadataError("no answer in time") from None
    except requests.RequestException as error:
        raise MetadataError(f"unreachable ({type(error).__name__})") from None
    except OSError as error:  # urllib3 errors while streaming the body
        raise MetadataError(f"the answer broke off ({type(error).__name__})") from None


def merge(configured: ServiceProvider, published: ServiceProvider) -> ServiceProvider:
    """The configured SP with what its metadata adds: certificates, and the endpoints the file lacks."""
    if published.entity_id != configured.entity_id:
        raise MetadataError(f"it is for entity ID {published.entity_id[:200]!r}, not {configured.entity_id!r}")
    if configured.require_signed_requests and published.certificate is None:
        raise MetadataError("it has no signing certificate, and this SP's requests must be signed")
    listed = {endpoint.url for endpoint in published.acs}
    for endpoint in configured.acs:
        if endpoint.url not in listed:
            log.warning(
                "SAML SP %s: the configured ACS %s is not in its metadata; using the configured one",
                configured.entity_id,
                endpoint.url,
            )
    if configured.slo and published.slo and configured.slo.url != published.slo.url:
        log.warning(
            "SAML SP %s: the configured SLO address %s differs from its metadata's %s; using the configured one",
            configured.entity_id,
            configured.slo.url,
            published.slo.url,
        )
    return dataclasses.replace(
        configured,
        certificate=published.certificate,
        encryption_certificate=published.encryption_certificate,
        acs=configured.acs or published.acs,
        slo=configured.slo or published.slo,
    )


@dataclass
class _Entry:
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    sp: ServiceProvider | None = None  # the last good merge
    refresh_at: float = 0.0  # monotonic: fetch again from then on
    usable_until: float = 0.0  # monotonic: never use `sp` after this (stale limit, validUntil)
    retry_at: float = 0.0  # monotonic: no fetch before this (after a failure)
    forced_at: float = float("-inf")  # monotonic: the last refresh after a failed signature


class PublishedMetadata:
    """Per-process cache of SPs resolved from their metadata_url, keyed by entity ID."""

    def __init__(self, fetch: Callable[[str], bytes] = fetch_metadata, clock: Callable[[], float] = time.monotonic):
        self._fetch, self._clock = fetch, clock
        self._entries: dict[str, _Entry] = {}
        self._guard = threading.Lock()

    def _entry(self, entity_id: str) -> _Entry:
        with self._guard:
            return self._entries.setdefault(entity_id, _Entry())

    def resolve(self, configured: ServiceProvider) -> ServiceProvider:
        """The SP with its metadata's certificates; MetadataUnavailable (503) when there is no usable copy."""
        entry = self._entry(configured.entity_id)
        if not entry.lock.acquire(blocking=False):
            # Another thread is fetching: a usable copy serves meanwhile; without one, wait for the fetch.
            sp, usable_until = entry.sp, entry.usable_until
            if sp is not None and self._clock() < usable_until:
                return sp
            if not entry.lock.acquire(timeout=FETCH_TIMEOUT[0] + FETCH_DEADLINE + FETCH_TIMEOUT[1]):
                raise MetadataUnavailable(configured.name)
        try:
            now = self._clock()
            usable = entry.sp if entry.sp is not None and now < entry.usable_until else None
            if usable is not None and now < entry.refresh_at:
                return usable
            fresh = self._refresh(configured, entry, now) if now >= entry.retry_at else None
            if fresh is not None:
                return fresh
            if usable is not None:
                return usable  # a due refresh failed: the last good copy, within MAX_STALE
            raise MetadataUnavailable(configured.name)
        finally:
            entry.lock.release()

    def refresh_after_failed_signature(
        self, configured: ServiceProvider, used: ServiceProvider
    ) -> ServiceProvider | None:
        """After a signature did not verify with `used`: newer metadata to try, or None (nothing new, or
        a forced refresh happened less than MIN_FORCED_REFRESH ago, or the fetch failed)."""
        entry = self._entry(configured.entity_id)
        with entry.lock:
            now = self._clock()
            if entry.sp is not None and entry.sp.certificate != used.certificate and now < entry.usable_until:
                return entry.sp  # another request refreshed it meanwhile
            if now - entry.forced_at < MIN_FORCED_REFRESH:
                return None
            entry.forced_at = now
            log.info(
                "SAML SP %s: a request's signature did not verify; fetching its metadata again", configured.entity_id
            )
            fresh = self._refresh(configured, entry, now)
            if fresh is None or fresh.certificate == used.certificate:
                return None
            log.info("SAML SP %s: new signing certificate from its metadata", configured.entity_id)
            return fresh

    def _refresh(self, configured: ServiceProvider, entry: _Entry, now: float) -> ServiceProvider | None:
        """Fetch, parse and merge into entry: the SP, or None (entry unchanged but for retry_at) on any problem."""
        url = configured.metadata_url
        if url is None:  # callers only resolve SPs configured with a metadata_url
            raise ValueError(f"{configured.entity_id} has no metadata_url")
        try:
            published, validity = parse_sp_metadata_with_validity(
                self._fetch(url),
                sign=configured.sign,
                encrypt_assertion=configured.encrypt_assertion,
                allow_idp_initiated=configured.allow_idp_initiated,
            )
            sp = merge(configured, published)
            ttl, lifetime = self._lifetimes(validity)
        except MetadataError as error:
            entry.retry_at = now + RETRY_AFTER_FAILURE
            log.warning(
                "SAML SP %s: its metadata at %s cannot be used: %s",
                configured.entity_id,
                configured.metadata_url,
                error,
            )
            return None
        entry.sp, entry.refresh_at, entry.usable_until = sp, now + ttl, now + lifetime
        entry.retry_at = 0.0
        return sp

    @staticmethod
    def _lifetimes(validity: Validity) -> tuple[float, float]:
        """(seconds until the next fetch, seconds the copy may be used at most)."""
        ttl = METADATA_TTL if validity.cache_duration is None else min(METADATA_TTL, validity.cache_duration)
        lifetime = ttl + MAX_STALE
        if validity.valid_until is not None:
            remaining = validity.valid_until - time.time()
            if remaining <= 0:
                raise MetadataError("it has expired (validUntil)")
            ttl, lifetime = min(ttl, remaining), min(lifetime, remaining)
        return ttl, lifetime
