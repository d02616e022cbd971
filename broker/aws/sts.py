"""Turn an entitlement into short-lived role credentials: mint the assertion, exchange it at STS.

The assertion is a bearer credential for the role until it expires, so it never appears in an
exception message, a log line or an exception chain raised from here. (botocore's own DEBUG logging
prints request bodies: keep the `botocore` logger above DEBUG in production.)

The exchange is the one AWS call on the hot path (every issuance), so it is made with botocore's parts
rather than through a boto3 client: the request is built by botocore's serializer from STS's service
model (parameters validated), its body encoded once, signed by botocore's SigV4 signer, sent on a
pooled, kept-alive connection of botocore's urllib3 session, and the answer parsed by botocore's
parser. A boto3 client did the same with 0.3-0.6 ms more CPU per call (its event machinery, and the
10 KB assertion urlencoded byte by byte twice, once to send and once to sign). Retries are botocore's
standard mode, decided by its own retry conditions and backoff: at most one retry (a kept-alive
connection the server closed, a connection error, a 5xx or throttling answer), and never past the
call's overall deadline.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

import boto3
import botocore
import botocore.session
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError
from botocore.httpsession import URLLib3Session
from botocore.parsers import ResponseParserFactory
from botocore.retries.standard import (
    ExponentialBackoff,
    RetryContext,
    RetryEventAdapter,
    StandardRetryConditions,
    ThrottlingErrorDetector,
)
from botocore.serialize import create_serializer
from botocore.utils import get_environ_proxies, parse_timestamp

from broker.aws import evidence
from broker.aws.assertion import build_saml_response
from broker.core.entitlements import Entitlement
from broker.core.identity import Identity
from broker.core.issuance import RoleCredentials
from broker.errors import StsRefused, StsUnavailable
from sso_common.keys import SigningIdentity
from sso_common.metrics import metrics
from sso_common.request_id import outgoing_headers

MAX_ERROR_MESSAGE = 200
OPERATION = "AssumeRoleWithSAML"
STS_EVENT = "request-created.sts.AssumeRoleWithSAML"  # for a boto3 client: before signing, so the header is signed
USER_AGENT = f"sso-broker Botocore/{botocore.__version__}"


_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/=]*")


def form_encode(fields: dict[str, Any]) -> bytes:
    """The body `urlencode(fields)` gives (each value its `str`), for a fraction of the CPU: the SAMLAssertion is
    ~10 KB of base64, which `quote_plus` escapes in Python a character at a time (0.5 ms), while its only
    characters to escape are `+`, `/` and `=` (three `str.replace`, 0.04 ms)."""

    def quoted(value: Any) -> str:
        text = str(value)
        if _BASE64_TEXT.fullmatch(text):
            return text.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
        return quote_plus(text)

    return "&".join(f"{quote_plus(str(name))}={quoted(value)}" for name, value in fields.items()).encode("ascii")


def parse_sts_timestamp(value: str) -> datetime:
    """An answer's timestamp (STS writes ISO 8601, `2026-11-30T22:00:00Z`) read by `datetime.fromisoformat`;
    anything else by botocore's own parser. botocore's parses every one through dateutil: ~30 us per call."""
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return parse_timestamp(value)


def _observe(outcome: str, started: float) -> None:
    metrics().sts.labels(outcome).observe(time.perf_counter() - started)


def add_request_id(request, **_) -> None:
    """The ID of the request that asked for credentials, on an outgoing AWS request (an AWSRequest, before it
    is signed; also usable as a boto3 hook on `STS_EVENT`)."""
    for name, value in outgoing_headers().items():
        request.headers[name] = value


class StsCredentialIssuer:
    """Exchanges the broker's signed SAML assertions for role credentials at one STS endpoint.

    Real STS takes AssumeRoleWithSAML unsigned, so by default the broker holds no AWS credentials for
    this. `caller_sessions` (account ID -> boto3 Session, or None: unsigned) signs each call with a session in
    the role's account instead; the emulator needs that, because with IAM enforcement on it refuses unsigned calls
    and keeps the new session in the caller's account.

    Each call has an overall deadline (`deadline` seconds, default connect + read timeout): an attempt's read
    timeout is cut to what remains of it, and a retry is made only while time remains.
    """

    def __init__(
        self,
        sts_endpoint_url: str | None,
        region: str,
        signing_identity: SigningIdentity,
        broker_idp_entity_id: str,
        *,
        caller_sessions: Callable[[str], boto3.Session | None] | None = None,
        connect_timeout: float = 3,
        read_timeout: float = 10,
        max_attempts: int = 2,
        deadline: float | None = None,
        max_pool_connections: int = 10,
    ):
        self.sts_endpoint_url = sts_endpoint_url
        self.region = region
        self.signing_identity = signing_identity
        self.broker_idp_entity_id = broker_idp_entity_id
        self._caller_sessions = caller_sessions
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._deadline = deadline if deadline is not None else connect_timeout + read_timeout
        self._credentials: dict[str, Any] = {}  # account ID -> the caller session's (refreshing) credentials
        self._lock = threading.Lock()

        core = botocore.session.get_session()
        # Where botocore would send it, and how it reaches there (CA bundle, proxies), resolved once as a
        # boto3 client would (the client itself is not used for the calls).
        resolver = core.create_client(
            "sts",
            region_name=region,
            endpoint_url=sts_endpoint_url,
            config=Config(signature_version=UNSIGNED),
        )
        self.endpoint = resolver.meta.endpoint_url.rstrip("/")
        self._operation = resolver.meta.service_model.operation_model(OPERATION)
        self._protocol = resolver.meta.service_model.protocol
        self._serializer = create_serializer(self._protocol, include_validation=True)
        parsers = ResponseParserFactory()
        parsers.set_parser_defaults(timestamp_parser=parse_sts_timestamp)
        self._parser = parsers.create_parser(self._protocol)
        self._http = URLLib3Session(
            verify=core.get_config_variable("ca_bundle") or True,
            proxies=get_environ_proxies(self.endpoint),
            timeout=(connect_timeout, read_timeout),
            max_pool_connections=max_pool_connections,
        )
        self._retry = StandardRetryConditions(max_attempts=max_attempts)
        self._backoff = ExponentialBackoff(
            service_name="sts", throttling_detector=ThrottlingErrorDetector(RetryEventAdapter())
        )

    def issue(self, identity: Identity, entitlement: Entitlement) -> RoleCredentials:
        """Credentials for `entitlement`'s role, named after `identity`.

        `entitlement` must come from `broker.core.entitlements.check_entitlement`, which enforces who may
        have it; this only carries out the decision.
        """
        minted = build_saml_response(  # IdentityRefused if AWS could not name the person
            identity, entitlement, self.broker_idp_entity_id, self.signing_identity
        )
        evidence.record_assertion(minted)  # for the explanation: decoded, the signature value withheld
        assertion = base64.b64encode(minted).decode()
        started = time.perf_counter()
        try:  # the caller's credentials too: the first call in an account assumes a role there (a network call)
            signed = self._caller_credentials(entitlement.account_id) is not None
            evidence.record_request(
                endpoint=self.endpoint,
                role_arn=entitlement.role_arn,
                principal_arn=entitlement.provider_arn,
                duration=entitlement.session_duration,
                assertion_b64=assertion,
                signed=signed,
                emulator=self.sts_endpoint_url is not None,
            )
            answer = self._call(
                entitlement.account_id,
                {
                    "RoleArn": entitlement.role_arn,
                    "PrincipalArn": entitlement.provider_arn,
                    "SAMLAssertion": assertion,
                    "DurationSeconds": entitlement.session_duration,
                },
            )
        except (BotoConnectionError, HTTPClientError) as exc:
            _observe("unreachable", started)
            evidence.record_unreachable(f"unreachable ({type(exc).__name__})")
            raise StsUnavailable(
                f"STS at {self.sts_endpoint_url or self.region} is unreachable ({type(exc).__name__})"
            ) from None
        if "Error" in answer:
            _observe("error", started)
            error = answer["Error"]
            code = str(error.get("Code", "Unknown"))
            message = str(error.get("Message", "")).replace(assertion, "[assertion]")[:MAX_ERROR_MESSAGE]
            evidence.record_refusal(code, message)
            if answer.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
                raise StsUnavailable(f"STS failed on its side: {code}: {message}") from None
            raise StsRefused(code, message) from None
        evidence.record_answer(answer)
        _observe("success", started)
        credentials = answer["Credentials"]
        return RoleCredentials(
            access_key_id=credentials["AccessKeyId"],
            secret_access_key=credentials["SecretAccessKey"],
            session_token=credentials["SessionToken"],
            expiration=credentials["Expiration"].astimezone(UTC),
            assumed_role_arn=answer["AssumedRoleUser"]["Arn"],
        )

    def _call(self, account_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """AssumeRoleWithSAML: the parsed answer (an `Error` entry when STS refused), or botocore's
        ConnectionError / HTTPClientError when STS could not be reached within the deadline."""
        deadline = time.monotonic() + self._deadline
        serialized = self._serializer.serialize_to_request(params, self._operation)  # ParamValidationError if bad
        body = form_encode(serialized["body"])  # once: signed and sent as these bytes
        headers = {**serialized["headers"], "User-Agent": USER_AGENT}
        url = self.endpoint + serialized["url_path"]
        attempt = 1
        while True:
            request = AWSRequest(method=serialized["method"], url=url, data=body, headers=headers)
            add_request_id(request)  # before signing: the header is signed too
            credentials = self._caller_credentials(account_id)
            if credentials is not None:
                SigV4Auth(credentials.get_frozen_credentials(), "sts", self.region).add_auth(request)
            prepared = request.prepare()
            remaining = deadline - time.monotonic()
            prepared.context["read_timeout"] = max(min(self._read_timeout, remaining), 0.001)
            response: AWSResponse | None = None
            answer: dict[str, Any] | None = None
            try:
                response = self._http.send(prepared)
            except (BotoConnectionError, HTTPClientError) as failure:
                context = RetryContext(attempt, self._operation, caught_exception=failure)
                if not self._retry_within(context, deadline):
                    raise
            else:
                answer = self._parser.parse(
                    {"status_code": response.status_code, "headers": response.headers, "body": response.content},
                    self._operation.output_shape,
                )
                answer.setdefault("ResponseMetadata", {})["HTTPStatusCode"] = response.status_code
                if response.status_code < 300:
                    return answer
                context = RetryContext(attempt, self._operation, parsed_response=answer, http_response=response)
                if not self._retry_within(context, deadline):
                    return answer
            attempt += 1

    def _retry_within(self, context: RetryContext, deadline: float) -> bool:
        """botocore's standard retry decision for this attempt; if it says retry, wait its backoff first.
        False when no attempt is left, the failure is not retryable, or the deadline would pass."""
        if not self._retry.is_retryable(context):
            return False
        delay = self._backoff.delay_amount(context)
        if time.monotonic() + delay + self._connect_timeout >= deadline:
            return False
        time.sleep(delay)
        return True

    def _caller_credentials(self, account_id: str):
        """The credentials of the caller session in the role's account (refreshed by botocore before they
        expire), or None when calls go unsigned."""
        if self._caller_sessions is None:
            return None
        with self._lock:
            if account_id not in self._credentials:
                session = self._caller_sessions(account_id)
                self._credentials[account_id] = session.get_credentials() if session is not None else None
            return self._credentials[account_id]
