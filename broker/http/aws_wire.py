"""The AWS wire format of errors and request bodies, shared by the sso-oidc and sso blueprints.

Refusals of the domain (`broker.errors.IdentityCenterError`, named by AWS's error name) and of the
request's shape (`ApiError`, raised here and in the blueprints) both leave as AWS's JSON error.

botocore recognises a rest-json error only by name, from the `x-amzn-ErrorType` header or a `__type`
field; it takes the text from `message`. Real sso-oidc also sends OAuth's `error` and
`error_description`, which other OAuth clients read. Every error carries all of them.
"""

from __future__ import annotations

import json
import logging
import uuid

from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from broker.errors import IdentityCenterError
from sso_common import json_input
from sso_common.operations import outage_answer
from sso_common.store.errors import StoreUnavailable
from sso_common.web import in_its_own_words, refusal_message

log = logging.getLogger(__name__)

MAX_JSON_BYTES = 16 * 1024  # the largest legitimate body (RegisterClient) is well under 2 KiB

# AWS error name -> (HTTP status, OAuth error code or None)
ERRORS = {
    # sso-oidc
    "AccessDeniedException": (400, "access_denied"),
    "AuthorizationPendingException": (400, "authorization_pending"),
    "ExpiredTokenException": (400, "expired_token"),
    "InvalidClientException": (401, "invalid_client"),
    "InvalidClientMetadataException": (400, "invalid_client_metadata"),
    "InvalidGrantException": (400, "invalid_grant"),
    "InvalidRedirectUriException": (400, "invalid_redirect_uri"),
    "InvalidRequestException": (400, "invalid_request"),
    "InvalidScopeException": (400, "invalid_scope"),
    "SlowDownException": (400, "slow_down"),
    "UnauthorizedClientException": (400, "unauthorized_client"),
    "UnsupportedGrantTypeException": (400, "unsupported_grant_type"),
    "InternalServerException": (500, "server_error"),
    # sso portal API
    "UnauthorizedException": (401, None),
    "ForbiddenException": (403, None),
    "ResourceNotFoundException": (404, None),
    "TooManyRequestsException": (429, None),
    "ServiceUnavailableException": (503, None),
}


class ApiError(Exception):
    """A refusal in AWS's words; `message` is safe to send (no token, secret or credential)."""

    def __init__(self, name: str, message: str):
        if name not in ERRORS:
            raise ValueError(f"unknown AWS error name {name!r}")
        super().__init__(f"{name}: {message}")
        self.name, self.message = name, message

    @property
    def status(self) -> int:
        return ERRORS[self.name][0]


def error_response(error: ApiError) -> Response:
    status, oauth_code = ERRORS[error.name]
    body = {"__type": error.name, "message": error.message}
    if oauth_code:
        body.update(error=oauth_code, error_description=error.message)
    return Response(
        json.dumps(body), status=status, mimetype="application/json", headers={"x-amzn-ErrorType": error.name}
    )


def json_body() -> dict:
    """The request's JSON object. Empty, oversized, malformed or non-object bodies are an
    InvalidRequestException, whatever the Content-Type says (botocore sends none for some calls)."""
    if (request.content_length or 0) > MAX_JSON_BYTES:
        raise ApiError("InvalidRequestException", "The request body is too large.")
    raw = request.get_data(cache=False)
    if len(raw) > MAX_JSON_BYTES:
        raise ApiError("InvalidRequestException", "The request body is too large.")
    try:
        body = json_input.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ApiError("InvalidRequestException", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError("InvalidRequestException", "The request body must be a JSON object.")
    return body


def optional_string(body: dict, name: str, *, max_length: int = 4096) -> str | None:
    """A string member of the body, None when absent or empty."""
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise ApiError("InvalidRequestException", f"{name} must be a string of at most {max_length} characters.")
    return value


def string_field(body: dict, name: str, *, max_length: int = 4096) -> str:
    """A required string member of the body."""
    value = optional_string(body, name, max_length=max_length)
    if value is None:
        raise ApiError("InvalidRequestException", f"{name} is required.")
    return value


def string_list(body: dict, name: str, *, max_items: int = 16) -> list[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > max_items
        or not all(isinstance(item, str) and 0 < len(item) <= 1024 for item in value)
    ):
        raise ApiError("InvalidRequestException", f"{name} must be a list of at most {max_items} strings.")
    return value


def install_error_handlers(blueprint: Blueprint) -> None:
    """Answer every failure in the blueprint's routes in the wire format, never as an HTML page."""

    @blueprint.errorhandler(ApiError)
    def api_error(error: ApiError):
        log.info("%s %s refused: %s", request.method, request.path, error.name)
        return error_response(error)

    @blueprint.errorhandler(IdentityCenterError)
    def domain_error(error: IdentityCenterError):
        log.info("%s %s refused: %s", request.method, request.path, error.aws_error)
        return error_response(ApiError(error.aws_error, error.message))

    @blueprint.errorhandler(StoreUnavailable)
    def store_unavailable(error: StoreUnavailable):
        """A store's engine is down or restarting: retryable (botocore retries a 503), never a 500."""
        message = error.public_message or "The service is temporarily unavailable. Try again in a few seconds."
        return outage_answer(error, error_response(ApiError("ServiceUnavailableException", message)))

    @blueprint.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if error.code == 429:
            return error_response(ApiError("TooManyRequestsException", "Too many requests. Try again later."))
        return in_its_own_words(error_response(ApiError("InvalidRequestException", refusal_message(error))), error)

    @blueprint.errorhandler(Exception)
    def unexpected(error: Exception):
        reference = uuid.uuid4().hex[:12]
        log.exception("internal error (reference %s) on %s %s", reference, request.method, request.path)
        return error_response(ApiError("InternalServerException", f"Internal error (reference {reference})."))
