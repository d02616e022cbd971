"""One SCIM request in, one SCIM response out: which upstream is calling (its bearer token), then scim2-server's
handler over that upstream's storage. No web framework here (broker/http/scim.py is the glue).

Every answer is in SCIM's format (RFC 7644 3.12: `schemas`, `status`, `scimType`, `detail`), refusals
included: a wrong or missing token is 401 with `WWW-Authenticate: Bearer realm="SCIM"`, a body over the limit
413, a store whose engine is down or restarting a 503 (retryable; see `unavailable`), anything
unexpected a 500 whose detail names only a reference that the log line carries too.
"""

from __future__ import annotations

import hmac
import logging
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from scim2_models import (
    Error,
    PayloadTooLargeException,
    PreconditionFailedException,
    Resource,
    ResourceType,
    SCIMException,
    ScimProvider,
    UnauthorizedException,
)
from scim2_server.conditions import Conditions
from scim2_server.handler import ScimHandler
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.routing import Operation
from scim2_server.service import ScimService

from broker.scim.provider import MAX_BODY_BYTES
from sso_common.operations import store_unavailable_message
from sso_common.store.errors import StoreUnavailable

log = logging.getLogger(__name__)

RETRY_DEADLINE = 2.0  # seconds a PATCH or PUT that lost a race is re-read and re-applied for, then 412


@dataclass(frozen=True)
class ScimClient:
    """An upstream allowed to provision: its SCIM token, and the handler over its storage."""

    upstream: str
    token: str = field(repr=False)
    handler: ScimHandler


class RetryingHandler(ScimHandler):
    """scim2-server's handler; a PATCH or PUT that lost a race with another write (the store's version moved)
    is applied again to the fresh resource, after a short random pause (so that racing writers spread out),
    for up to RETRY_DEADLINE, unless the client asked for a version itself (If-Match: then 412 at once)."""

    @staticmethod
    def _again(conditions: Conditions, started: float, attempt: int) -> bool:
        if conditions.if_match is not None or time.monotonic() - started > RETRY_DEADLINE:
            return False
        time.sleep(random.uniform(0, min(0.05, 0.002 * 2**attempt)))
        return True

    def patch_resource(
        self, resource_type: ResourceType, resource_id: str, patch_op: Any, conditions: Conditions
    ) -> Resource:
        started, attempt = time.monotonic(), 0
        while True:
            try:
                return super().patch_resource(resource_type, resource_id, patch_op.model_copy(deep=True), conditions)
            except PreconditionFailedException:
                if not self._again(conditions, started, attempt):
                    raise
                attempt += 1

    def replace_resource(
        self, resource_type: ResourceType, current: Resource, replacement: Resource, conditions: Conditions
    ) -> Resource:
        started, attempt = time.monotonic(), 0
        while True:
            try:
                return super().replace_resource(resource_type, current, replacement.model_copy(deep=True), conditions)
            except PreconditionFailedException:
                if not self._again(conditions, started, attempt):
                    raise
                attempt += 1
                current = self.storage.get(resource_type, str(current.id))


class ScimEndpoint:
    """The SCIM service at `base_url` (the portal's `/scim/v2`), for the upstreams in `clients`."""

    def __init__(self, base_url: str, service: ScimService, clients: list[ScimClient]):
        self.base_url, self.service, self.clients = base_url, service, clients

    @property
    def provider(self) -> ScimProvider:
        return self.service.provider

    def client_for(self, authorization: str | None) -> ScimClient | None:
        """The upstream whose token the Authorization header carries (compared in constant time), or None."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        found = None
        for client in self.clients:  # every token compared, whichever matches
            if hmac.compare_digest(client.token.encode(), token.encode()):
                found = client
        return found

    def serve(
        self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes | None
    ) -> ScimResponse:
        """The response to one request; `body` None means it was larger than MAX_BODY_BYTES. StoreUnavailable
        goes up to the caller (see `unavailable`)."""
        request = ScimRequest(method=method, base_url=self.base_url, path=path or "/", query=query, headers=headers)
        try:
            with self.service.provider:
                operation = self.service.match(request).operation
            if body is None:
                raise PayloadTooLargeException(detail=f"The request body is larger than {MAX_BODY_BYTES // 1024} KiB")
            request.body = body
            client = self.client_for(request.header("Authorization"))
            if operation is Operation.service_provider_config:  # readable without a token (RFC 7644 4)
                response = self.clients[0].handler.handle(request) if self.clients else None
                if response is not None:
                    return self._finish(response)
            if client is None:
                raise UnauthorizedException(detail="A valid SCIM bearer token is required")
            request.subject = client.upstream
            response = client.handler.handle(request)
        except SCIMException as refusal:
            log.info("SCIM %s %s refused: %s %s", method, path, refusal.status, refusal)
            response = self.service.error_response(refusal)
        except StoreUnavailable:
            raise  # the web layer logs and counts it, and answers with `unavailable`
        except Exception:
            reference = uuid.uuid4().hex[:12]
            log.exception("SCIM internal error (reference %s) on %s %s", reference, method, path)
            error = Error(status=500, detail=f"Internal error (reference {reference})")
            response = ScimResponse(HTTPStatus.INTERNAL_SERVER_ERROR, error.model_dump())
        return self._finish(response)

    def unavailable(self, outage: StoreUnavailable) -> ScimResponse:
        """The answer when a store's engine is down: a SCIM 503, to try again (the web layer adds Retry-After, as
        to every outage answer). Not a promise that nothing was written: a request's steps (the directory, a
        revocation, the audit record) are each their own transaction, and those before the outage stay."""
        error = Error(status=503, detail=store_unavailable_message(outage))
        return self._finish(ScimResponse(HTTPStatus.SERVICE_UNAVAILABLE, error.model_dump()))

    @staticmethod
    def _finish(response: ScimResponse) -> ScimResponse:
        response.headers.setdefault("Cache-Control", "no-store")
        return response
