"""Where SPs are looked up: the config file first, then SPs registered at run time.

Run-time registrations live in the shared state store (not in process memory), so every gunicorn
worker sees them. The store keeps the metadata as sent and it is re-read on lookup: one parser, one
set of rules, for both registration and use.
"""

from __future__ import annotations

import base64

from sso_common.store import StateStore

from .config import ServiceProvider
from .metadata import parse_sp_metadata

KIND = "saml_sp"
REGISTRATION_TTL = 365 * 24 * 3600  # re-register to renew


class AlreadyConfigured(Exception):
    """The entity ID belongs to an SP from the config file, which run-time registration cannot replace."""


class ServiceProviders:
    def __init__(self, configured: dict[str, ServiceProvider], store: StateStore):
        self._configured, self._store = configured, store

    def find(self, entity_id: str) -> ServiceProvider | None:
        if entity_id in self._configured:
            return self._configured[entity_id]
        record = self._store.get(KIND, entity_id)
        return parse_sp_metadata(base64.b64decode(record["metadata"]), **record["options"]) if record else None

    def register(self, metadata: bytes, **options) -> ServiceProvider:
        """Parse (MetadataError if unusable) and store; a later registration of the entity ID replaces it."""
        sp = parse_sp_metadata(metadata, **options)
        if sp.entity_id in self._configured:
            raise AlreadyConfigured(sp.entity_id)
        self._store.put(KIND, sp.entity_id, {"metadata": base64.b64encode(metadata).decode(), "options": options}, REGISTRATION_TTL)
        return sp
