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
The protocol schema python3-saml validates every Response against is compiled once per thread
(sso_common.saml_schemas), not per Response; the SP key that signs the HTTP-Redirect queries is loaded once per
connector (`_SigningAuth`), not per signature. Settings are built once per metadata document (rebuilding them
per request costs a quarter to a third of the throughput). The IdP's metadata is fetched on first use, so the
broker starts while the IdP is down, and kept for its Cache-Control max-age within bounds
(broker.connectors.fetch); a Response whose signature fails refetches it once (rate-limited), so an IdP's
certificate rollover works without a restart.

Who the person is: the NameID (persistent, or email address, or unspecified), or the attribute named by
`attributes.subject` (an ADFS/Entra object ID, say); a transient NameID names nobody for long and is
refused unless `attributes.subject` says where the lasting identifier is. Attribute names are
configuration (broker.connectors.mapping), URIs included. MFA: an AuthnContextClassRef listed in the
upstream's `mfa.authn_contexts`, or a value of its `mfa.amr_attribute` listed in `mfa.amr`
(broker.connectors.trust).

The broker's SP metadata: `sp_metadata_xml()` is one upstream's (its ACS and SLO), `sp_metadata(connectors)`
lists every SAML upstream's ACS and SLO under the one SP entity ID, for IdPs that accept only endpoints
from metadata (broker/http/metadata.py serves both).

For "How did I get here?", python3-saml's checks are recorded by the error code `is_valid` stopped with, in
its order (broker.connectors.recording.SAML_CHECKS), and the broker's own checks as they are made; the
Response is kept pretty-printed with its signature values withheld.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import xmlsec
from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.constants import OneLogin_Saml2_Constants as SAML
from onelogin.saml2.errors import OneLogin_Saml2_ValidationError as Invalid
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from broker.connectors import COMMON_KEYS, ConnectorContext, Redirect, UpstreamEntry, recording
from broker.connectors.fetch import DEFAULT_POLICY, CachedDocument, FetchPolicy, ServerSlots, UpstreamClient
from broker.connectors.mapping import Authentication, IdentityMapping
from broker.core import evidence
from broker.core.identity import LogoutHint, UpstreamLogin
from broker.errors import LoginFailed, UpstreamUnavailable
from sso_common import saml_schemas
from sso_common.config import URL_PATTERN
from sso_common.keys import SigningIdentity, load_or_create_signing_identity
from sso_common.records import Record
from sso_common.store import StateStore
from sso_common.xmlsign import DS_NAMESPACE

saml_schemas.install()  # python3-saml compiles the protocol schema once per thread, not per Response

REPLAY_KIND = "saml_assertion_id"
METADATA_REFRESH_INTERVAL = 30.0  # at most one refetch per this many seconds after a failed signature
_ASSERTION = "/samlp:Response/saml:Assertion"
DEFAULT_ATTRIBUTES = {
    "email": "email",
    "email_verified": None,
    "display_name": "displayName",
    "groups": "groups",
    "department": "department",
    "username": None,
}
MD = "urn:oasis:names:tc:SAML:2.0:metadata"

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


class _SigningAuth(OneLogin_Saml2_Auth):
    """python3-saml's Auth, signing the HTTP-Redirect query (AuthnRequest, LogoutRequest) with xmlsec as it does,
    but with the SP key loaded once per connector: python3-saml parses the PEM for every signature, and OpenSSL
    then sets the fresh key up again at its first use: ~1.05 ms a signature, 0.31 ms with the key kept."""

    _TRANSFORMS = {SAML.RSA_SHA256: xmlsec.constants.TransformRsaSha256}  # SECURITY["signatureAlgorithm"]

    def __init__(self, request_data: dict[str, Any], settings: OneLogin_Saml2_Settings, key: xmlsec.Key):
        super().__init__(request_data, old_settings=settings)
        self._signing_key = key

    def _build_signature(self, data, saml_type, sign_algorithm=SAML.RSA_SHA256):
        signed = self._build_sign_query(data[saml_type], data.get("RelayState"), sign_algorithm, saml_type)
        context = xmlsec.SignatureContext()
        context.key = self._signing_key
        signature = context.sign_binary(signed.encode(), self._TRANSFORMS[sign_algorithm])
        data["Signature"] = OneLogin_Saml2_Utils.b64encode(signature)
        data["SigAlg"] = sign_algorithm


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
        fetch: FetchPolicy = DEFAULT_POLICY,
        slots: ServerSlots | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.id, self.display_name = id, display_name
        self.mapping, self.store, self.clock_skew = mapping, store, clock_skew
        self.metadata_url = metadata_url
        self.sp_entity_id = f"{portal_url}/saml/metadata"
        self.acs_url = f"{portal_url}/login/{id}/acs"
        self.slo_url = f"{portal_url}/login/{id}/slo"
        self.sp_identity = sp_identity
        self._sp = {
            "entityId": self.sp_entity_id,
            "assertionConsumerService": {"url": self.acs_url, "binding": SAML.BINDING_HTTP_POST},
            "singleLogoutService": {"url": self.slo_url, "binding": SAML.BINDING_HTTP_REDIRECT},
            "NameIDFormat": SAML.NAMEID_PERSISTENT,
            "x509cert": sp_identity.certificate_pem,
            "privateKey": sp_identity.key_pem,
        }
        self._signing_key = xmlsec.Key.from_memory(sp_identity.key_pem, xmlsec.constants.KeyDataFormatPem, None)
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
        self.http = UpstreamClient(display_name, metadata_url or portal_url, fetch, slots)
        self._metadata: CachedDocument[OneLogin_Saml2_Settings] = CachedDocument(self._load_metadata, monotonic)
        self._static: OneLogin_Saml2_Settings | None = None
        if metadata_xml is not None:
            self._static = self._build_settings(metadata_xml)

    @classmethod
    def from_config(cls, entry: UpstreamEntry, context: ConnectorContext) -> SAMLConnector:
        """A `type: saml` entry of `upstreams:`; ConfigError naming the key when it is wrong."""
        node = entry.node
        node.only_keys(*COMMON_KEYS, "metadata_url", "metadata_file", "attributes", "want_assertions_signed")
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
            except UnicodeDecodeError:  # UTF-16 as some IdPs' exports are, or not text at all
                raise file.error(f"{path} is not UTF-8 text (save the metadata as UTF-8)") from None
        portal_url = context.portal_url
        mapping = IdentityMapping.from_config(
            node.child("attributes", {}), DEFAULT_ATTRIBUTES, entry.trust, extra=("subject",)
        )
        try:
            return cls(
                id=entry.id,
                display_name=entry.display_name,
                clock_skew=context.clock_skew,
                portal_url=portal_url,
                metadata_url=url.string(URL_PATTERN, "an http(s) URL") if url.value is not None else None,
                metadata_xml=metadata_xml,
                mapping=mapping,
                sp_identity=load_or_create_signing_identity(
                    context.instance_dir / "saml-sp", "sp", f"{portal_url}/saml/metadata"
                ),
                store=context.store,
                fetch=entry.fetch,
                slots=context.slots,
            )
        except UpstreamUnavailable as error:  # a metadata_file that python3-saml cannot use
            raise file.error(error.reason) from None

    def describe(self) -> list[str]:
        return [
            f"IdP metadata: {self.metadata_url or '(from metadata_file)'}",
            f"SP entity ID: {self.sp_entity_id}",
            f"ACS: {self.acs_url}; SLO: {self.slo_url}",
            "subject <- " + (" or ".join(self.mapping.extra.get("subject", ())) or "NameID (not transient)"),
            *self.mapping.describe(),
        ]

    def sp_metadata_xml(self) -> str:
        """The broker's SP metadata for this upstream (entity ID, this ACS and SLO, the AuthnRequest
        signing certificate). Needs no IdP, so it is served even while the IdP is down."""
        return sp_metadata([self])

    def begin(self, state: str) -> tuple[Redirect, SAMLLoginState]:
        auth = _SigningAuth(self._request_data, self._idp_settings(), self._signing_key)
        url = auth.login(return_to=state)
        return Redirect(url), SAMLLoginState(auth.get_last_request_id())

    def load_state(self, record: dict[str, Any]) -> SAMLLoginState:
        return SAMLLoginState.from_record(record)

    def complete(self, params: Mapping[str, str], kept: SAMLLoginState) -> UpstreamLogin:
        if not params.get("SAMLResponse"):
            raise LoginFailed("The sign-in answer has no SAMLResponse.")
        settings = self._idp_settings()
        try:
            return self._complete(settings, params, kept)
        except _BadSignature:
            fresh = self._metadata.refresh(METADATA_REFRESH_INTERVAL) if self._static is None else None
            if fresh is None:
                raise _rejected(_REASONS[Invalid.INVALID_SIGNATURE]) from None
        evidence.recorder().note("saml_metadata_refetched", True)
        try:  # the IdP may have rolled its certificate over: once more with its current metadata
            return self._complete(fresh, params, kept)
        except _BadSignature:
            raise _rejected(_REASONS[Invalid.INVALID_SIGNATURE]) from None

    def _complete(
        self, settings: OneLogin_Saml2_Settings, params: Mapping[str, str], kept: SAMLLoginState
    ) -> UpstreamLogin:
        # Each check reports its outcome to the explanation (broker.core.evidence): python3-saml's by the
        # error code it stopped with, in is_valid's order (broker.connectors.recording.SAML_CHECKS).
        record = evidence.recorder()
        section = record.section("upstream", f"The answer from {self.display_name} (SAML 2.0)")
        recording.saml_plan(section, skew=self.clock_skew)
        if record.notes.get("saml_metadata_refetched"):
            section.fact("IdP metadata", "fetched again after a failed signature (certificate rollover), then retried")
        record.note("value_kind", "attribute")
        response, validated = None, False
        try:
            response = OneLogin_Saml2_Response(settings, params["SAMLResponse"])
            section.passed(recording.READABLE)
            recording.describe_saml(
                section, response.get_xml_document(), params["SAMLResponse"], bool(response.encrypted)
            )
            response.is_valid(self._request_data, request_id=kept.request_id, raise_exceptions=True)
            validated = True
            recording.saml_outcome(section, response.document)
            answers = response.get_in_response_to()
            name_id = response.get_nameid()
            name_id_format = response.get_nameid_format()
            attributes = response.get_attributes()
            section.passed(recording.NAME_ID, received=f"{name_id_format or 'no Format'}")
        except Invalid as error:
            reason = _REASONS.get(error.code, "it is not valid")
            if response is None:
                section.failed(recording.READABLE, reason)
            elif not (validated and recording.getter_failed(section, error.code, reason)):
                recording.saml_outcome(section, response.document, error.code, reason)
            if error.code == Invalid.INVALID_SIGNATURE:
                raise _BadSignature from None
            raise _rejected(reason) from None
        except Exception:  # noqa: BLE001 - malformed base64/XML: python3-saml raises anything
            if response is None:
                section.failed(recording.READABLE, "it is not a readable SAML response")
            else:
                section.failed("python3-saml stopped with an unclassified error", "it is not a readable SAML response")
            raise _rejected("it is not a readable SAML response") from None
        with section.run(recording.IN_RESPONSE_TO, received=answers or "(absent)", expected=kept.request_id):
            if answers != kept.request_id:
                raise _rejected("it does not answer our sign-in request (InResponseTo)")
        assertion = OneLogin_Saml2_XML.query(response.get_xml_document(), _ASSERTION)[0]  # decrypted if need be
        with section.run(recording.CONDITIONS_SKEW):
            expires = self._check_conditions(assertion, response.get_assertion_not_on_or_after())
        with section.run(recording.REPLAY, received=assertion.get("ID")):
            if not self.store.add(REPLAY_KIND, assertion.get("ID"), {}, max(1, expires - time.time())):
                raise _rejected("the assertion was already used (replayed)")

        statement = OneLogin_Saml2_XML.query(assertion, "./saml:AuthnStatement")[0]
        amr_attribute = self.mapping.trust.mfa.amr_attribute
        subject_names = self.mapping.extra.get("subject", ())
        with section.run(recording.SUBJECT, received=name_id_format or "no Format"):
            if subject_names:
                source = next((n for n in subject_names if attributes.get(n)), None)
                subject = attributes[source] if source else None
                subject = subject[0] if isinstance(subject, list) and len(subject) == 1 else subject
                record.note("subject_source", f"attribute {source!r}" if source else "no subject attribute")
            elif name_id_format == SAML.NAMEID_TRANSIENT:
                raise LoginFailed(
                    "The identity provider sent a transient NameID, which names nobody for longer than one sign-in: "
                    "it must send a persistent NameID, or the upstream's attributes.subject must name the "
                    "attribute that holds a lasting identifier."
                )
            else:
                subject = name_id
                record.note("subject_source", f"NameID ({name_id_format or 'no Format'})")
        return self.mapping.login(
            subject,
            attributes,
            authn=Authentication(
                time=OneLogin_Saml2_Utils.parse_SAML_to_time(statement.get("AuthnInstant")),
                contexts=frozenset(response.get_authn_contexts()),
                amr=frozenset(v for v in attributes.get(amr_attribute or "", []) if isinstance(v, str)),
            ),
            issuer=settings.get_idp_data()["entityId"],
            name_id=name_id,
            name_id_format=name_id_format,
            session_index=response.get_session_index(),
        )

    def logout(self, hint: LogoutHint, return_to: str) -> Redirect | None:
        """SP-initiated LogoutRequest; None when the IdP has no logout endpoint or cannot be reached."""
        try:
            settings = self._idp_settings()
        except UpstreamUnavailable:
            return None
        if not hint.name_id or not settings.get_idp_slo_url():
            return None
        auth = _SigningAuth(self._request_data, settings, self._signing_key)
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
        return self._static if self._static is not None else self._metadata.get()

    def _load_metadata(self) -> tuple[OneLogin_Saml2_Settings, float]:
        if self.metadata_url is None:  # built from a metadata_file: the settings were made at start-up
            raise UpstreamUnavailable(f"{self.display_name}: no SAML metadata.")
        what = "SAML metadata"
        answer = self.http.get(self.metadata_url, what)
        if answer.status != 200:
            raise UpstreamUnavailable(f"{self.display_name} answered HTTP {answer.status} ({what}).")
        try:
            text = answer.body.decode("utf-8")
        except UnicodeDecodeError:
            raise UpstreamUnavailable(f"{self.display_name}: the SAML metadata is not valid XML.") from None
        return self._build_settings(text), answer.max_age()

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


class _BadSignature(Exception):
    """python3-saml found the signature invalid: perhaps the IdP's new certificate, see `complete`."""


def _rejected(why: str) -> LoginFailed:
    return LoginFailed(f"The SAML response was rejected: {why}.")


def sp_metadata(connectors: Iterable[SAMLConnector]) -> str:
    """SP metadata naming every given upstream's ACS (HTTP-POST, indexed, the first the default) and SLO
    (HTTP-Redirect) under the broker's one SP entity ID, with the AuthnRequest signing certificate. Built
    with lxml, in the schema's element order (python3-saml's builder takes one ACS only)."""
    connectors = list(connectors)
    first = connectors[0]
    root = etree.Element(f"{{{MD}}}EntityDescriptor", nsmap={"md": MD, "ds": DS_NAMESPACE}, entityID=first.sp_entity_id)
    sp = etree.SubElement(
        root,
        f"{{{MD}}}SPSSODescriptor",
        AuthnRequestsSigned="true",
        WantAssertionsSigned="true",
        protocolSupportEnumeration=SAML.NS_SAMLP,
    )
    ds = f"{{{DS_NAMESPACE}}}"
    key_info = etree.SubElement(etree.SubElement(sp, f"{{{MD}}}KeyDescriptor", use="signing"), f"{ds}KeyInfo")
    certificate = etree.SubElement(etree.SubElement(key_info, f"{ds}X509Data"), f"{ds}X509Certificate")
    certificate.text = first.sp_identity.certificate_base64
    for connector in connectors:
        etree.SubElement(
            sp, f"{{{MD}}}SingleLogoutService", Binding=SAML.BINDING_HTTP_REDIRECT, Location=connector.slo_url
        )
    etree.SubElement(sp, f"{{{MD}}}NameIDFormat").text = SAML.NAMEID_PERSISTENT
    for index, connector in enumerate(connectors):
        acs = etree.SubElement(
            sp, f"{{{MD}}}AssertionConsumerService", Binding=SAML.BINDING_HTTP_POST, Location=connector.acs_url
        )
        acs.set("index", str(index))
        if index == 0:
            acs.set("isDefault", "true")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True).decode()
