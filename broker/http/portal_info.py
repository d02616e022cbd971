"""What a command-line client needs to know about this portal, for `broker-login` and scripts.

- `GET /.well-known/sso-portal` (no authentication, nothing secret): the start URL, the AWS region of
  the accounts, and, when the broker runs against an AWS emulator, the emulator's address as people's
  tools reach it with the services it should answer for. Clients write it into the profiles they make
  (per-service `endpoint_url`s in a `services` section), so credentials work where they were issued.
  Against real AWS `aws_endpoint_url` is null and clients add nothing.
- `GET /token/whoAmI` (the access token in `x-amz-sso_bearer_token`, as the sso API takes it; the
  AWS access portal's own API has the same call): who the token belongs to and their groups, so a
  client can explain "no AWS access" as the portal's accounts page does.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from broker.core.exports import EMULATED_SERVICES
from broker.http.aws_wire import install_error_handlers
from broker.http.context import state
from broker.http.sso_portal import BEARER_HEADER

blueprint = Blueprint("portal_info", __name__)
install_error_handlers(blueprint)

CACHE_SECONDS = 300  # short: the emulator's address can change with a restart of the demo


@blueprint.get("/.well-known/sso-portal")
def portal_document():
    settings = state().settings
    emulator = settings.aws_endpoint_url_for_clients
    response = jsonify(
        start_url=f"{settings.portal_url}/start",
        portal_url=settings.portal_url,
        region=settings.access.region,
        aws_endpoint_url=emulator,
        services=list(EMULATED_SERVICES) if emulator else [],  # botocore client names
    )
    response.headers["Cache-Control"] = f"public, max-age={CACHE_SECONDS}"
    return response


@blueprint.get("/token/whoAmI")
def who_am_i():
    identity, _ = state().grants.bearer(request.headers.get(BEARER_HEADER))
    response = jsonify(
        username=identity.username,
        email=identity.email,
        displayName=identity.display_name,
        groups=sorted(identity.groups),
    )
    response.headers["Cache-Control"] = "no-store"
    return response
