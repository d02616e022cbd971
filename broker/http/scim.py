"""`<portal>/scim/v2`: the SCIM service provider (broker/scim), as Flask serves it. Glue only: every method and
path under the prefix goes to `ScimEndpoint.serve`, whose answer (always SCIM JSON) goes back as it is."""

from __future__ import annotations

import json
from http import HTTPStatus

from flask import Blueprint, Response, request
from scim2_models import Error
from scim2_server.responses import ScimResponse
from werkzeug.exceptions import RequestEntityTooLarge

from broker.http.context import state
from broker.scim.provider import MAX_BODY_BYTES
from sso_common.operations import outage_answer
from sso_common.store.errors import StoreUnavailable

blueprint = Blueprint("scim", __name__, url_prefix="/scim/v2")
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _body() -> bytes | None:
    """The request body, or None when it is larger than the SCIM limit (then unread beyond it)."""
    request.max_content_length = MAX_BODY_BYTES
    try:
        return request.get_data(cache=False)
    except RequestEntityTooLarge:
        return None


@blueprint.route("", methods=METHODS, strict_slashes=False)
@blueprint.route("/<path:path>", methods=METHODS)
def scim(path: str = ""):
    endpoint = state().scim
    if endpoint is None:
        error = Error(status=404, detail="SCIM provisioning is not enabled for any identity provider of this portal")
        return Response(json.dumps(error.model_dump()), status=404, mimetype="application/scim+json")
    headers = {name: value for name, value in request.headers.items()}
    try:
        answer = endpoint.serve(request.method, f"/{path}", request.args.to_dict(), headers, _body())
    except StoreUnavailable as outage:
        return outage_answer(outage, _response(endpoint.unavailable(outage)))
    return _response(answer)


def _response(answer: ScimResponse) -> Response:
    """Flask's response for the SCIM endpoint's answer, as it is."""
    body = "" if answer.body is None else json.dumps(answer.body)
    response = Response(body, status=int(answer.status))
    for name, value in answer.headers.items():
        response.headers[name] = value
    if answer.status == HTTPStatus.NO_CONTENT:
        response.headers.pop("Content-Type", None)
    return response
