"""SAML 2.0 upstream: signed AuthnRequest over HTTP-Redirect, Response by HTTP-POST, python3-saml in strict mode.

python3-saml does the protocol and the crypto. What it leaves to us (read in its 1.16 source), done here:
- InResponseTo: it compares only when the Response carries one, so an unsolicited Response would pass;
  we require it to answer the AuthnRequest kept with the login transaction.
- Replay: it keeps no state; each assertion ID is kept in the state store until it expires.
- Clock skew: it allows a fixed, process-wide `ALLOWED_CLOCK_DRIFT` (300 s) on the Conditions
  timestamps. Changing that class attribute would change every SAML user in the process, so we leave it
  and check the Conditions again with the configured skew: the effective skew is the smaller of the two.
  SubjectConfirmationData times are checked by python3-saml without any skew.
- Destination and Recipient are compared with the ACS URL built from the configured portal URL, never
  from the request's Host header.
Settings are built once (rebuilding them per request costs a quarter to a third of the throughput);
the IdP's metadata is fetched on first use, so the broker starts while the IdP is down. An AuthnContext
in `mfa_contexts` counts as multi-factor ("mfa"), any other as a password sign-in ("pwd").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.constants import OneLogin_Saml2_Constants as SAML
from onelogin.saml2.errors import OneLogin_Saml2_ValidationError as Invalid
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from broker.connectors import COMMON_KEYS, ConnectorContext, Redirect, UpstreamEntry
from broker.connectors.mapping import IdentityMapping
from broker.core.identity import LogoutHint, UpstreamLogin
from broker.errors import LoginFailed, UpstreamUnavailable
from sso_common.config import URL_PATTERN
from sso_common.keys import SigningIdentity, load_or_create_signing_identity
from sso_common.records import Record
from sso_common.store import StateStore

TIMEOUT = (3.0, 10.0)  # seconds: connect, read
REPLAY_KIND = "saml_assertion_id"
MFA_CONTEXTS = ("http://schemas.openid.net/pape/policies/2007/06/multi-factor", "https://refeds.org/profile/mfa")
_ASSERTION = "/samlp:Response/saml:Assertion"
DEFAULT_ATTRIBUTES = {
    "email": "email",
    "display_name": "displayName",
    "groups": "groups",
    "department": "department",
    "username": None,
}

SECURITY = {
    "authnRequestsSigned": True,
    "logoutRequestSigned": True,
    "wantAssertionsSigned": True,
    "wantMessagesSigned": False,
    "wantNameId": True,
    "requestedAuthnContext": False,
    "signatureAlgorithm": SAML.RSA_SHA256,
    "digestAlgorithm": SAML.SHA256,
    "rejectDeprecatedAlgorithm": True,
}

# python3-saml's messages quote values from the Response; these short reasons never do.
_REASONS = {
    Invalid.STATUS_CODE_IS_NOT_SUCCESS: "the identity provider refused the sign-in",
    Invalid.INVALID_SIGNATURE: "the signature is not valid",
    Invalid.NO_SIGNATURE_FOUND: "it is not signed",
    Invalid.NO_SIGNED_ASSERTION: "the assertion is not signed",
    Invalid.ASSERTION_EXPIRED: "the assertion has expired",
    Invalid.SESSION_EXPIRED: "the assertion has expired",
    Invalid.ASSERTION_TOO_EARLY: "the assertion is not valid yet",
    Invalid.WRONG_AUDIENCE: "the assertion is meant for another service provider (audience)",
    Invalid.WRONG_DESTINATION: "the response was sent to another address (destination)",
    Invalid.EMPTY_DESTINATION: "the response was sent to another address (destination)",
    Invalid.WRONG_SUBJECTCONFIRMATION: "no valid subject confirmation (recipient, request or expiry)",
    Invalid.WRONG_INRESPONSETO: "it answers another sign-in request",
    Invalid.WRONG_ISSUER: "it comes from another identity provider",
    Invalid.INVALID_XML_FORMAT: "it is not valid SAML",
    Invalid.WRONG_NUMBER_OF_ASSERTIONS: "it must hold exactly one assertion",
    Invalid.DEPRECATED_SIGNATURE_METHOD: "it is signed with a deprecated algorithm",
    Invalid.DEPRECATED_DIGEST_METHOD: "it is signed with a deprecated algorithm",
}


@dataclass(frozen=True)
class SAMLLoginState(Record):
    """Kept with the login transaction: the ID of the AuthnRequest the Response must answer."""

    request_id: str


class SAMLConnector:
    protocol = "saml"

    def __init__(
        self,
        *,
        id: str,
        display_name: str,
        portal_url: str,
        mapping: IdentityMapping,
        sp_identity: SigningIdentity,
        store: StateStore,
        clock_skew: int,
        metadata_url: str | None = None,
        metadata_xml: str | None = None,
        mfa_contexts: tuple[str, ...] = MFA_CONTEXTS,
        timeout: tuple[float, float] = TIMEOUT,
    ):
        self.id, self.display_name = id, display_name
        self.mapping, self.store, self.clock_skew, self.timeout = mapping, store, clock_skew, timeout
        self.metadata_url, self.mfa_contexts = metadata_url, frozenset(mfa_contexts)
        self.acs_url = f"{portal_url}/login/{id}/acs"
        self._sp = {
            "entityId": f"{portal_url}/saml/metadata",
            "assertionConsumerService": {"url": self.acs_url, "binding": SAML.BINDING_HTTP_POST},
            "singleLogoutService": {"url": f"{portal_url}/login/{id}/slo", "binding": SAML.BINDING_HTTP_REDIRECT},
            "NameIDFormat": SAML.NAMEID_PERSISTENT,
            "x509cert": sp_identity.certificate_pem,
            "privateKey": sp_identity.key_pem,
        }
        acs = urlsplit(self.acs_url)
        # What python3-saml reads to learn "where was this received": the configured ACS, not the Host header.
        self._request_data: dict[str, Any] = {
            "https": "on" if acs.scheme == "https" else "off",
            "http_host": acs.netloc,
            "script_name": "",
            "path_info": acs.path,
            "get_data": {},
            "post_data": {},
        }
        self._lock = threading.Lock()
        self._settings: OneLogin_Saml2_Settings | None = None
        if metadata_xml is not None:
            self._settings = self._build_settings(metadata_xml)

    @classmethod
    def from_config(cls, entry: UpstreamEntry, context: ConnectorContext) -> SAMLConnector:
        """A `type: saml` entry of `upstreams:`; ConfigError naming the key when it is wrong."""
        node = entry.node
        node.only_keys(
            *COMMON_KEYS, "metadata_url", "metadata_file", "attributes", "want_assertions_signed", "mfa_authn_contexts"
        )
        signed = node.child("want_assertions_signed", True)
        if not signed.boolean():
            raise signed.error("must be true: unsigned assertions are never accepted")
        url, file = node.child("metadata_url", None), node.child("metadata_file", None)
        if (url.value is None) == (file.value is None):
            raise node.error("needs exactly one of metadata_url and metadata_file")
        metadata_xml = None
        if file.value is not None:
            path = Path(node.source).parent / file.string()
            try:
                metadata_xml = path.read_text(encoding="utf-8")
            except OSError as error:
                raise file.error(f"cannot read {path} ({error.strerror})") from None
        portal_url = context.portal_url
        try:
            return cls(
                id=entry.id,
                display_name=entry.display_name,
                clock_skew=context.clock_skew,
                portal_url=portal_url,
                metadata_url=url.string(URL_PATTERN, "an http(s) URL") if url.value is not None else None,
                metadata_xml=metadata_xml,
                mapping=IdentityMapping.from_config(
                    node.child("attributes", {}), DEFAULT_ATTRIBUTES, context.known_groups
                ),
                mfa_contexts=tuple(node.child("mfa_authn_contexts", list(MFA_CONTEXTS)).strings()),
                sp_identity=load_or_create_signing_identity(
                    context.instance_dir / "saml-sp", "sp", f"{portal_url}/saml/metadata"
                ),
                store=context.store,
            )
        except UpstreamUnavailable as error:  # a metadata_file that python3-saml cannot use
            raise file.error(error.reason) from None

    def sp_metadata_xml(self) -> str:
        """The broker's SP metadata (entity ID, this ACS and SLO, the AuthnRequest signing certificate).
        Needs no IdP, so it is served even while the IdP is down."""
        settings = OneLogin_Saml2_Settings(
            {"strict": True, "sp": self._sp, "security": SECURITY}, sp_validation_only=True
        )
        metadata = settings.get_sp_metadata()
        return metadata.decode() if isinstance(metadata, bytes) else metadata

    def begin(self, state: str) -> tuple[Redirect, SAMLLoginState]:
        auth = OneLogin_Saml2_Auth(self._request_data, old_settings=self._idp_settings())
        url = auth.login(return_to=state)
        return Redirect(url), SAMLLoginState(auth.get_last_request_id())

    def load_state(self, record: dict[str, Any]) -> SAMLLoginState:
        return SAMLLoginState.from_record(record)

    def complete(self, params: Mapping[str, str], kept: SAMLLoginState) -> UpstreamLogin:
        if not params.get("SAMLResponse"):
            raise LoginFailed("The sign-in answer has no SAMLResponse.")
        settings = self._idp_settings()
        try:
            response = OneLogin_Saml2_Response(settings, params["SAMLResponse"])
            response.is_valid(self._request_data, request_id=kept.request_id, raise_exceptions=True)
            answers = response.get_in_response_to()
            name_id = response.get_nameid()
            attributes = response.get_attributes()
        except Invalid as error:
            raise _rejected(_REASONS.get(error.code, "it is not valid")) from None
        except Exception:  # noqa: BLE001 - malformed base64/XML: python3-saml raises anything
            raise _rejected("it is not a readable SAML response") from None
        if answers != kept.request_id:
            raise _rejected("it does not answer our sign-in request (InResponseTo)")
        assertion = OneLogin_Saml2_XML.query(response.get_xml_document(), _ASSERTION)[0]  # decrypted if need be
        expires = self._check_conditions(assertion, response.get_assertion_not_on_or_after())
        if not self.store.add(REPLAY_KIND, assertion.get("ID"), {}, max(1, expires - time.time())):
            raise _rejected("the assertion was already used (replayed)")

        statement = OneLogin_Saml2_XML.query(assertion, "./saml:AuthnStatement")[0]
        contexts = set(response.get_authn_contexts())
        identity = self.mapping.identity(
            name_id,
            attributes,
            authn_methods=frozenset({"mfa"} if contexts & self.mfa_contexts else {"pwd"}),
            auth_time=OneLogin_Saml2_Utils.parse_SAML_to_time(statement.get("AuthnInstant")),
            issuer=settings.get_idp_data()["entityId"],
        )
        return UpstreamLogin(
            identity,
            LogoutHint(
                name_id=name_id, name_id_format=response.get_nameid_format(), session_index=response.get_session_index()
            ),
        )

    def logout(self, hint: LogoutHint, return_to: str) -> Redirect | None:
        """SP-initiated LogoutRequest; None when the IdP has no logout endpoint or cannot be reached."""
        try:
            settings = self._idp_settings()
        except UpstreamUnavailable:
            return None
        if not hint.name_id or not settings.get_idp_slo_url():
            return None
        auth = OneLogin_Saml2_Auth(self._request_data, old_settings=settings)
        return Redirect(
            auth.logout(
                return_to=return_to,
                name_id=hint.name_id,
                name_id_format=hint.name_id_format,
                session_index=hint.session_index,
            )
        )

    def _check_conditions(self, assertion, confirmation_expiry: int | None) -> float:
        """The Conditions window with our skew; returns until when the assertion could be accepted."""
        now = time.time()
        conditions = OneLogin_Saml2_XML.query(assertion, "./saml:Conditions")[0]
        not_before, not_after = (conditions.get(name) for name in ("NotBefore", "NotOnOrAfter"))
        if not_before and OneLogin_Saml2_Utils.parse_SAML_to_time(not_before) > now + self.clock_skew:
            raise _rejected(_REASONS[Invalid.ASSERTION_TOO_EARLY])
        ends = [OneLogin_Saml2_Utils.parse_SAML_to_time(not_after) + self.clock_skew] if not_after else []
        if ends and ends[0] <= now:
            raise _rejected(_REASONS[Invalid.ASSERTION_EXPIRED])
        ends += [confirmation_expiry] if confirmation_expiry else []
        if not ends:  # nothing would ever expire it, so the replay cache could not forget it
            raise _rejected("the assertion has no expiry (NotOnOrAfter)")
        return max(ends)

    # -- the IdP's metadata -------------------------------------------------------------------------

    def _idp_settings(self) -> OneLogin_Saml2_Settings:
        with self._lock:
            if self._settings is None:
                self._settings = self._build_settings(self._fetch_metadata())
            return self._settings

    def _fetch_metadata(self) -> str:
        if self.metadata_url is None:  # built from a metadata_file: the settings were made at start-up
            raise UpstreamUnavailable(f"{self.display_name}: no SAML metadata.")
        try:
            answer = requests.get(self.metadata_url, timeout=self.timeout)
            answer.raise_for_status()
            return answer.text
        except requests.Timeout:
            raise UpstreamUnavailable(f"{self.display_name} did not answer in time (SAML metadata).") from None
        except requests.RequestException as error:
            raise UpstreamUnavailable(
                f"{self.display_name} is unreachable (SAML metadata: {type(error).__name__})."
            ) from None

    def _build_settings(self, metadata_xml: str) -> OneLogin_Saml2_Settings:
        """Only the `idp` part of the parsed metadata is used: merging all of it would let the IdP's
        metadata switch off our signed requests or change the NameID format we ask for."""
        try:
            idp = OneLogin_Saml2_IdPMetadataParser.parse(metadata_xml).get("idp", {})
        except Exception:  # noqa: BLE001 - parse errors of any kind
            raise UpstreamUnavailable(f"{self.display_name}: the SAML metadata is not valid XML.") from None
        if (
            not idp.get("entityId")
            or not idp.get("singleSignOnService")
            or not (idp.get("x509cert") or idp.get("x509certMulti", {}).get("signing"))
        ):
            raise UpstreamUnavailable(
                f"{self.display_name}: the SAML metadata lacks the entity ID, an "
                "HTTP-Redirect sign-in endpoint or a signing certificate."
            )
        try:
            return OneLogin_Saml2_Settings(
                {"strict": True, "debug": False, "sp": self._sp, "idp": idp, "security": SECURITY}
            )
        except Exception as error:  # noqa: BLE001 - OneLogin_Saml2_Error lists the bad settings
            raise UpstreamUnavailable(f"{self.display_name}: unusable SAML metadata ({error}).") from None


def _rejected(why: str) -> LoginFailed:
    return LoginFailed(f"The SAML response was rejected: {why}.")
