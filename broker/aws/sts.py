"""Turn an entitlement into short-lived role credentials: mint the assertion, exchange it at STS.

The assertion is a bearer credential for the role until it expires, so it never appears in an
exception message, a log line or an exception chain raised from here. (botocore's own DEBUG logging
prints request bodies: keep the `botocore` logger above DEBUG in production.)
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from datetime import UTC

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

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
STS_EVENT = "request-created.sts.AssumeRoleWithSAML"  # before signing: a header added here is signed too


def _observe(outcome: str, started: float) -> None:
    metrics().sts.labels(outcome).observe(time.perf_counter() - started)


def add_request_id(request, **_) -> None:
    """botocore hook: the STS call carries the ID of the request that asked for credentials."""
    for name, value in outgoing_headers().items():
        request.headers[name] = value


class StsCredentialIssuer:
    """Exchanges the broker's signed SAML assertions for role credentials at one STS endpoint.

    Real STS takes AssumeRoleWithSAML unsigned, so by default the broker holds no AWS credentials for
    this. `caller_sessions` (account ID -> boto3 Session) signs each call with a session in the role's
    account instead; the emulator needs that, because with IAM enforcement on it refuses unsigned calls
    and keeps the new session in the caller's account.
    """

    def __init__(
        self,
        sts_endpoint_url: str | None,
        region: str,
        signing_identity: SigningIdentity,
        broker_idp_entity_id: str,
        *,
        caller_sessions: Callable[[str], boto3.Session] | None = None,
        connect_timeout: float = 3,
        read_timeout: float = 10,
        max_attempts: int = 2,
    ):
        self.sts_endpoint_url = sts_endpoint_url
        self.region = region
        self.signing_identity = signing_identity
        self.broker_idp_entity_id = broker_idp_entity_id
        self._caller_sessions = caller_sessions
        self._config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "max_attempts": max_attempts},
        )
        self._clients: dict[str, object] = {}
        self._lock = threading.Lock()
        self._unsigned_client = (
            None
            if caller_sessions
            else boto3.client(
                "sts",
                endpoint_url=sts_endpoint_url,
                region_name=region,
                config=self._config.merge(Config(signature_version=UNSIGNED)),
            )
        )
        if self._unsigned_client is not None:
            self._unsigned_client.meta.events.register_first(STS_EVENT, add_request_id)

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
        evidence.record_request(
            endpoint=self.sts_endpoint_url or f"https://sts.{self.region}.amazonaws.com",
            role_arn=entitlement.role_arn,
            principal_arn=entitlement.provider_arn,
            duration=entitlement.session_duration,
            assertion_b64=assertion,
            signed=self._caller_sessions is not None,
            emulator=self.sts_endpoint_url is not None,
        )
        started = time.perf_counter()
        try:
            answer = self._client_for(entitlement.account_id).assume_role_with_saml(
                RoleArn=entitlement.role_arn,
                PrincipalArn=entitlement.provider_arn,
                SAMLAssertion=assertion,
                DurationSeconds=entitlement.session_duration,
            )
        except (BotoConnectionError, HTTPClientError) as exc:
            _observe("unreachable", started)
            evidence.record_unreachable(f"unreachable ({type(exc).__name__})")
            raise StsUnavailable(
                f"STS at {self.sts_endpoint_url or self.region} is unreachable ({type(exc).__name__})"
            ) from None
        except ClientError as exc:
            _observe("error", started)
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "Unknown"))
            message = str(error.get("Message", "")).replace(assertion, "[assertion]")[:MAX_ERROR_MESSAGE]
            evidence.record_refusal(code, message)
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
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

    def _client_for(self, account_id: str):
        if self._caller_sessions is None:
            return self._unsigned_client
        with self._lock:
            if account_id not in self._clients:
                client = self._caller_sessions(account_id).client(
                    "sts", endpoint_url=self.sts_endpoint_url, region_name=self.region, config=self._config
                )
                # botocore marks AssumeRoleWithSAML as unsigned; `register` would run too late to change that.
                client.meta.events.register_first("choose-signer.sts.AssumeRoleWithSAML", lambda **_: "v4")
                client.meta.events.register_first(STS_EVENT, add_request_id)
                self._clients[account_id] = client
            return self._clients[account_id]
