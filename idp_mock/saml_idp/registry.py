"""Where SPs are looked up: the config file first, then SPs registered at run time.

Run-time registrations live in the shared state store (not in process memory), so every server
worker sees them. The store keeps the metadata as sent and it is re-read on lookup: one parser, one
set of rules, for both registration and use. A configured SP with a `metadata_url` is returned with
what its published metadata adds (certificates), fetched and cached by remote.PublishedMetadata.
"""

from __future__ import annotations

import base64

from idp_mock.errors import AlreadyConfigured
from idp_mock.saml_idp.config import ServiceProvider
from idp_mock.saml_idp.metadata import parse_sp_metadata
from idp_mock.saml_idp.remote import PublishedMetadata
from sso_common.store import StateStore

KIND = "saml_sp"
REGISTRATION_TTL = 365 * 24 * 3600  # re-register to renew


class ServiceProviders:
    def __init__(self, configured: dict[str, ServiceProvider], store: StateStore):
        self._configured, self._store = configured, store
        self._published = PublishedMetadata()

    def find(self, entity_id: str) -> ServiceProvider | None:
        """The SP, complete (metadata_url resolved: MetadataUnavailable when it cannot be), or None."""
        if entity_id in self._configured:
            sp = self._configured[entity_id]
            return self._published.resolve(sp) if sp.metadata_url else sp
        record = self._store.get(KIND, entity_id)
        return parse_sp_metadata(base64.b64decode(record["metadata"]), **record["options"]) if record else None

    def known(self, entity_id: str) -> bool:
        """Whether the IdP has this SP (configured or registered), without fetching its published metadata."""
        return entity_id in self._configured or self._store.get(KIND, entity_id) is not None

    def refreshed(self, sp: ServiceProvider) -> ServiceProvider | None:
        """After a request's signature did not verify with sp's certificate: the SP with newer metadata
        (the SP may have rotated its key), or None when there is none to try."""
        configured = self._configured.get(sp.entity_id)
        if configured is None or not configured.metadata_url:
            return None
        return self._published.refresh_after_failed_signature(configured, sp)

    def register(self, metadata: bytes, **options) -> ServiceProvider:
        """Parse (MetadataError if unusable) and store; a later registration of the entity ID replaces it."""
        sp = parse_sp_metadata(metadata, **options)
        if sp.entity_id in self._configured:
            raise AlreadyConfigured(sp.entity_id)
        self._store.put(
            KIND, sp.entity_id, {"metadata": base64.b64encode(metadata).decode(), "options": options}, REGISTRATION_TTL
        )
        return sp
