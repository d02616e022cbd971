"""What the connectors record of an upstream's answer for the explanation (broker.core.evidence), and the
hooks that let the validating libraries say which checks they made.

- OpenID Connect: `RecordingClaimsRegistry` is joserfc's `JWTClaimsRegistry`, unchanged, observed: each
  claim's own check (`validate_iss`, `validate_exp`...) and the option checks (`nonce`) report their
  outcome as joserfc runs them, in joserfc's order; what it never got to stays "not reached". The ID token
  is shown decoded (header and claims, the nonce as a fingerprint), never in full.
- SAML: python3-saml's `is_valid` runs its checks in a fixed order and stops at the first failure with an
  error code; `SAML_CHECKS` is that order (python3-saml 1.16, read in onelogin/saml2/response.py) with the
  codes each check raises, so the code it stopped with marks that check failed, those before it passed and
  those after it not reached. The Response is shown pretty-printed, every signature value withheld, each
  signed element marked.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from copy import deepcopy
from datetime import UTC, datetime
from typing import Any, TypeVar

from joserfc.errors import ExpiredTokenError, InvalidClaimError, MissingClaimError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry
from lxml import etree
from onelogin.saml2.errors import OneLogin_Saml2_ValidationError as Invalid

from broker.core.evidence import BROKER, SectionRecorder, fingerprint

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., None])


def _for_reading_only(describe: F) -> F:
    """What only shows a document must never refuse a sign-in: a failure to show it is logged and said."""

    @functools.wraps(describe)
    def wrapper(section: SectionRecorder, *args: Any, **kwargs: Any) -> None:
        try:
            describe(section, *args, **kwargs)
        except Exception:  # noqa: BLE001 - a bug in showing, never in checking
            log.exception("the explanation could not show a document (%s)", describe.__name__)
            section.fact("(not shown)", "this part of the answer could not be shown")

    return wrapper  # type: ignore[return-value]


DS = "http://www.w3.org/2000/09/xmldsig#"
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
NS = {"ds": DS, "samlp": SAMLP, "saml": SAML}
WITHHELD = "[signature value withheld]"

# --- OpenID Connect ----------------------------------------------------------------------------------

JOSERFC_DECODE = "joserfc jwt.decode"
JOSERFC_CLAIMS = "joserfc JWTClaimsRegistry"
TOKEN_ENDPOINT = "the identity provider's token endpoint"
ISS_PARAMETER = "issuer of the answer (RFC 9207 iss)"
NO_ERROR = "no error in the answer"
CODE_PRESENT = "authorization code present"
CODE_REDEEMED = "code redeemed at the token endpoint"
ID_TOKEN_PRESENT = "ID token present"
SIGNATURE = "signature and algorithm"
ESSENTIAL = "essential claims present"
CLAIMS = ("iss", "aud", "sub", "exp", "iat", "nbf", "nonce")
AZP = "azp (authorized party)"
AT_HASH = "at_hash (access token hash)"
USERINFO = "userinfo about the same subject"


def oidc_plan(section: SectionRecorder, *, issuer: str, client_id: str, skew: int, algorithms: tuple[str, ...]) -> None:
    section.plan(
        (ISS_PARAMETER, BROKER, issuer),
        (NO_ERROR, BROKER),
        (CODE_PRESENT, BROKER),
        (CODE_REDEEMED, TOKEN_ENDPOINT, "the code, the PKCE verifier and the portal's client authentication"),
        (ID_TOKEN_PRESENT, BROKER),
        (SIGNATURE, JOSERFC_DECODE, f"{', '.join(algorithms)} with a key of the identity provider's JWKS"),
        (ESSENTIAL, JOSERFC_CLAIMS, "iss, aud, sub, exp, iat, nonce"),
        ("iss", JOSERFC_CLAIMS, issuer),
        ("aud", JOSERFC_CLAIMS, client_id),
        ("sub", JOSERFC_CLAIMS, "a string"),
        ("exp", JOSERFC_CLAIMS, f"later than now minus the allowed skew ({skew} s)"),
        ("iat", JOSERFC_CLAIMS, f"not later than now plus the allowed skew ({skew} s)"),
        ("nbf", JOSERFC_CLAIMS, f"when present: not later than now plus the allowed skew ({skew} s)"),
        ("nonce", JOSERFC_CLAIMS, "the nonce of this sign-in's authorization request"),
        (AZP, BROKER, f"{client_id} (when present, or when aud names several clients)"),
        (AT_HASH, BROKER, "when present: the left half of the access token's hash"),
        (USERINFO, BROKER, "the ID token's sub"),
    )


def epoch_text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return repr(value)
    try:
        return f"{value} ({datetime.fromtimestamp(value, UTC):%Y-%m-%d %H:%M:%S} UTC)"
    except (OverflowError, OSError, ValueError):
        return repr(value)


def shown_claim(name: str, value: Any) -> Any:
    """A claim as the explanation shows it: the nonce as a fingerprint (a one-time value of this sign-in)."""
    if name == "nonce" and isinstance(value, str):
        return fingerprint(value)
    return value


def _segment(part: str) -> Any:
    padded = part + "=" * (-len(part) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


@_for_reading_only
def describe_jwt(section: SectionRecorder, token: str, label: str) -> None:
    """A compact JWT as received: its header and claims decoded for reading (whatever the checks say of
    them), the token itself only as a fingerprint."""
    section.fact(label, fingerprint(token), "token endpoint answer")
    parts = token.split(".")
    try:
        header, claims = _segment(parts[0]), _segment(parts[1])
    except (IndexError, ValueError, UnicodeDecodeError, binascii.Error):
        section.fact(f"{label}: decoded", "not a readable JWT (three base64url parts, JSON header and claims)")
        return
    if isinstance(claims, dict):
        claims = {name: shown_claim(name, value) for name, value in claims.items()}
        for name in ("exp", "iat", "nbf", "auth_time"):
            if name in claims:
                claims[name] = epoch_text(claims[name])
    shown = {"header": header, "claims": claims}
    section.document(
        f"{label} (decoded)",
        "application/json",
        json.dumps(shown, indent=2, ensure_ascii=False, default=str),
        "The header and claims as received; the nonce as a fingerprint; the signature is not shown.",
    )


def signing_key(section: SectionRecorder, keys: KeySet, header: Mapping[str, Any], refetched: bool) -> None:
    """The key that verified the signature (joserfc picks it by kid)."""
    try:
        key = keys.get_by_kid(header.get("kid"))
        described = f"kid {key.kid or '(none)'}, {key.key_type}, JWK thumbprint {key.thumbprint()}"
    except Exception:  # noqa: BLE001 - only what to print: the signature was verified with one of these keys
        described = f"kid {header.get('kid')}"
    section.passed(
        SIGNATURE,
        received=f"{header.get('alg')}; {described}" + ("; the JWKS was fetched again first" if refetched else ""),
    )


@_for_reading_only
def token_answer(section: SectionRecorder, answer: Mapping[str, Any], method: str) -> None:
    """The token endpoint's answer: its parameters, every token as a fingerprint."""
    shown: dict[str, Any] = {}
    for name, value in answer.items():
        if name.endswith("_token") and isinstance(value, str):
            shown[name] = fingerprint(value)
        elif isinstance(value, (str, int, float, bool)) or value is None:
            shown[name] = value
        else:
            shown[name] = f"({type(value).__name__})"
    section.document(
        "Token endpoint answer",
        "application/json",
        json.dumps(shown, indent=2, ensure_ascii=False),
        f"Client authentication: {method}. Tokens are shown as fingerprints only.",
    )


class RecordingClaimsRegistry(JWTClaimsRegistry):
    """joserfc's JWTClaimsRegistry, whose checks report to `section` as joserfc makes them."""

    def __init__(self, section: SectionRecorder, **kwargs: Any):
        super().__init__(**kwargs)
        self.section = section

    def _observe(self, name: str, value: Any, check: Any) -> None:
        received = epoch_text(value) if name in ("exp", "iat", "nbf") else shown_claim(name, value)
        try:
            check()
        except (InvalidClaimError, ExpiredTokenError) as error:
            self.section.failed(name, error.description or error.error, received=received)
            raise
        self.section.passed(name, received=received, detail=f"now: {epoch_text(self.now)}" if name in _TIMES else "")

    def validate(self, claims: dict[str, Any]) -> None:
        try:
            super().validate(claims)
        except MissingClaimError as error:
            self.section.failed(ESSENTIAL, error.description or error.error, received=", ".join(sorted(claims)))
            raise
        except Exception:
            self.section.passed(ESSENTIAL)
            raise
        self.section.passed(ESSENTIAL)
        for name in CLAIMS:  # joserfc checks only the claims a token has: the others it had nothing to check
            if self.section.outcome(name) is None:
                self.section.skipped(name, "not in the token (optional)")

    def validate_iss(self, value: object) -> None:
        self._observe("iss", value, lambda: super(RecordingClaimsRegistry, self).validate_iss(value))

    def validate_sub(self, value: object) -> None:
        self._observe("sub", value, lambda: super(RecordingClaimsRegistry, self).validate_sub(value))

    def validate_aud(self, value: object) -> None:
        self._observe("aud", value, lambda: super(RecordingClaimsRegistry, self).validate_aud(value))

    def validate_exp(self, value: object) -> None:
        self._observe("exp", value, lambda: super(RecordingClaimsRegistry, self).validate_exp(value))

    def validate_nbf(self, value: object) -> None:
        self._observe("nbf", value, lambda: super(RecordingClaimsRegistry, self).validate_nbf(value))

    def validate_iat(self, value: object) -> None:
        self._observe("iat", value, lambda: super(RecordingClaimsRegistry, self).validate_iat(value))

    def check_value(self, claim_name: str, value: Any) -> None:
        if hasattr(self, f"validate_{claim_name}"):  # called from a validate_ method: observed there
            super().check_value(claim_name, value)
            return
        self._observe(claim_name, value, lambda: super(RecordingClaimsRegistry, self).check_value(claim_name, value))


_TIMES = ("exp", "iat", "nbf")

# --- SAML ----------------------------------------------------------------------------------------------

PYTHON3_SAML = "python3-saml is_valid"
READABLE = "readable SAML Response (base64, XML)"
# (name, the codes is_valid raises for it), in the order is_valid runs them.
SAML_CHECKS: tuple[tuple[str, tuple[int, ...], str], ...] = (
    ("SAML version 2.0", (Invalid.UNSUPPORTED_SAML_VERSION,), "2.0"),
    ("Response ID present", (Invalid.MISSING_ID,), ""),
    ("status Success", (Invalid.MISSING_STATUS, Invalid.MISSING_STATUS_CODE, Invalid.STATUS_CODE_IS_NOT_SUCCESS), ""),
    ("exactly one assertion", (Invalid.WRONG_NUMBER_OF_ASSERTIONS,), ""),
    (
        "signed elements and their references",
        (
            Invalid.WRONG_SIGNED_ELEMENT,
            Invalid.ID_NOT_FOUND_IN_SIGNED_ELEMENT,
            Invalid.DUPLICATED_ID_IN_SIGNED_ELEMENTS,
            Invalid.INVALID_SIGNED_ELEMENT,
            Invalid.DUPLICATED_REFERENCE_IN_SIGNED_ELEMENTS,
            Invalid.DEPRECATED_SIGNATURE_METHOD,
            Invalid.DEPRECATED_DIGEST_METHOD,
            Invalid.UNEXPECTED_SIGNED_ELEMENTS,
            Invalid.WRONG_NUMBER_OF_SIGNATURES_IN_RESPONSE,
            Invalid.WRONG_NUMBER_OF_SIGNATURES_IN_ASSERTION,
        ),
        "the Response or the Assertion, Reference URI = its ID, no deprecated algorithm",
    ),
    ("schema (saml-schema-protocol-2.0.xsd)", (Invalid.INVALID_XML_FORMAT,), ""),
    ("InResponseTo (when present)", (Invalid.WRONG_INRESPONSETO,), "this sign-in's AuthnRequest ID"),
    ("Conditions present", (Invalid.MISSING_CONDITIONS,), ""),
    (
        "NotBefore / NotOnOrAfter (python3-saml's 300 s drift)",
        (Invalid.ASSERTION_TOO_EARLY, Invalid.ASSERTION_EXPIRED),
        "now within the Conditions, 300 s either side",
    ),
    ("one AuthnStatement", (Invalid.WRONG_NUMBER_OF_AUTHSTATEMENTS,), ""),
    ("AttributeStatement present, not encrypted", (Invalid.NO_ATTRIBUTESTATEMENT, Invalid.ENCRYPTED_ATTRIBUTES), ""),
    ("Destination", (Invalid.WRONG_DESTINATION, Invalid.EMPTY_DESTINATION), "the portal's ACS URL"),
    ("Audience", (Invalid.WRONG_AUDIENCE,), "the portal's SP entity ID"),
    (
        "Issuer",
        (Invalid.ISSUER_MULTIPLE_IN_RESPONSE, Invalid.ISSUER_NOT_FOUND_IN_ASSERTION, Invalid.WRONG_ISSUER),
        "the IdP's entity ID (metadata)",
    ),
    ("SessionNotOnOrAfter", (Invalid.SESSION_EXPIRED,), "later than now"),
    (
        "SubjectConfirmation: bearer, Recipient, NotOnOrAfter",
        (Invalid.WRONG_SUBJECTCONFIRMATION,),
        "Recipient = the ACS URL, NotOnOrAfter later than now",
    ),
    ("assertion signed", (Invalid.NO_SIGNED_ASSERTION, Invalid.NO_SIGNED_MESSAGE), "a signed Assertion"),
    ("signature found", (Invalid.NO_SIGNATURE_FOUND,), ""),
    ("signature valid", (Invalid.INVALID_SIGNATURE,), "verifies with the IdP's certificate from its metadata"),
)
GETTERS = "python3-saml get_nameid / get_attributes"
NAME_ID = "NameID and attributes readable"
_GETTER_CODES = (
    Invalid.NO_NAMEID,
    Invalid.EMPTY_NAMEID,
    Invalid.SP_NAME_QUALIFIER_NAME_MISMATCH,
    Invalid.DUPLICATED_ATTRIBUTE_NAME_FOUND,
)
IN_RESPONSE_TO = "InResponseTo answers this sign-in (required)"
CONDITIONS_SKEW = "Conditions with the configured clock skew"
REPLAY = "assertion not seen before (replay cache)"
SUBJECT = "a lasting subject (not a transient NameID)"


def saml_plan(section: SectionRecorder, *, skew: int) -> None:
    section.plan(
        (READABLE, "python3-saml OneLogin_Saml2_Response", ""),
        *((name, PYTHON3_SAML, expected) for name, _, expected in SAML_CHECKS),
        (NAME_ID, GETTERS, ""),
        (IN_RESPONSE_TO, BROKER, "this sign-in's AuthnRequest ID"),
        (CONDITIONS_SKEW, BROKER, f"now within NotBefore / NotOnOrAfter, {skew} s either side"),
        (REPLAY, BROKER, "an assertion ID the state store has not kept"),
        (SUBJECT, BROKER, "a persistent NameID, or attributes.subject"),
    )


def _not_compared(document: etree._Element | None) -> dict[str, str]:
    """Checks python3-saml makes only when the Response carries what they compare."""
    if document is None:
        return {}
    skipped = {}
    if document.get("InResponseTo") is None:
        skipped["InResponseTo (when present)"] = (
            "no InResponseTo in the Response: python3-saml compares it only when present (the broker requires it)"
        )
    if document.get("Destination") is None:
        skipped["Destination"] = "no Destination in the Response: python3-saml compares it only when present"
    if not document.xpath("//saml:AuthnStatement/@SessionNotOnOrAfter", namespaces=NS):
        skipped["SessionNotOnOrAfter"] = "no SessionNotOnOrAfter in the assertion"
    if not document.xpath("//saml:Conditions/saml:AudienceRestriction/saml:Audience", namespaces=NS):
        skipped["Audience"] = "no Audience in the assertion: python3-saml compares it only when present"
    return skipped


def saml_outcome(
    section: SectionRecorder, document: etree._Element | None, code: int | None = None, reason: str = ""
) -> None:
    """Mark python3-saml's checks: all passed (`code` None), or passed up to the one that raised `code`."""
    skipped = _not_compared(document)
    for name, codes, _ in SAML_CHECKS:
        if code is not None and code in codes:
            section.failed(name, reason)
            return
        if name in skipped:
            section.skipped(name, skipped[name])
        else:
            section.passed(name)
    if code is not None:  # a code this list does not know: say so, after the checks it did pass
        section.failed(f"python3-saml error code {code}", reason)


def getter_failed(section: SectionRecorder, code: int, reason: str) -> bool:
    """python3-saml's getters run after is_valid: their refusals are theirs."""
    if code in _GETTER_CODES:
        section.failed(NAME_ID, reason)
        return True
    return False


def _certificate(text: str) -> str:
    try:
        der = base64.b64decode("".join(text.split()))
    except (ValueError, binascii.Error):
        return "[certificate]"
    return f"[certificate, SHA-256 fingerprint {hashlib.sha256(der).hexdigest()}]"


def shown_xml(root: etree._Element) -> tuple[str, list[str]]:
    """A SAML message pretty-printed for reading: every SignatureValue withheld, certificates as fingerprints,
    and each signed element marked with a comment naming its signature's Reference. Also describes the
    signatures (one line each)."""
    copy = deepcopy(root)
    described = []
    for signature in copy.iter(f"{{{DS}}}Signature"):
        signed = signature.getparent()
        if signed is None:
            continue
        reference = signature.find(".//ds:Reference", NS)
        method = signature.find(".//ds:SignatureMethod", NS)
        digest = signature.find(".//ds:DigestMethod", NS)
        uri = reference.get("URI", "") if reference is not None else ""
        line = (
            f"{etree.QName(signed).localname} ID={signed.get('ID')} is signed: Reference URI {uri or '(none)'}, "
            f"{(method.get('Algorithm') if method is not None else '?')}, digest "
            f"{(digest.get('Algorithm') if digest is not None else '?')}"
        )
        described.append(line)
        signed.insert(0, etree.Comment(f" SIGNED: {line.split(' is signed: ')[1]} "))
    for value in copy.iter(f"{{{DS}}}SignatureValue"):
        value.text = WITHHELD
    for certificate in copy.iter(f"{{{DS}}}X509Certificate"):
        certificate.text = _certificate(certificate.text or "")
    etree.indent(copy, space="  ")
    return etree.tostring(copy, encoding="unicode"), described


@_for_reading_only
def describe_saml(section: SectionRecorder, document: etree._Element, encoded: str, decrypted: bool) -> None:
    """The Response as received (decrypted when it was encrypted), and its main values."""
    text, signatures = shown_xml(document)
    section.fact("SAMLResponse as posted", f"{len(encoded)} characters of base64, {fingerprint(encoded)}")
    for index, line in enumerate(signatures, 1):
        section.fact(f"signature {index}", line)
    values = {
        "Issuer": "./saml:Issuer",
        "Destination": "@Destination",
        "InResponseTo": "@InResponseTo",
        "Assertion ID": "./saml:Assertion/@ID",
        "NameID": "./saml:Assertion/saml:Subject/saml:NameID",
        "NameID Format": "./saml:Assertion/saml:Subject/saml:NameID/@Format",
        "Recipient": "./saml:Assertion/saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData/@Recipient",
        "Audience": "./saml:Assertion/saml:Conditions/saml:AudienceRestriction/saml:Audience",
        "NotBefore": "./saml:Assertion/saml:Conditions/@NotBefore",
        "NotOnOrAfter": "./saml:Assertion/saml:Conditions/@NotOnOrAfter",
        "AuthnInstant": "./saml:Assertion/saml:AuthnStatement/@AuthnInstant",
        "AuthnContextClassRef": "./saml:Assertion/saml:AuthnStatement/saml:AuthnContext/saml:AuthnContextClassRef",
    }
    for label, path in values.items():
        found = document.xpath(path, namespaces=NS)
        if found:
            first = found[0]
            section.fact(label, first if isinstance(first, str) else (first.text or ""), "the Response")
    section.document(
        "SAML Response" + (" (the assertion decrypted)" if decrypted else ""),
        "application/xml",
        text,
        "Pretty-printed; signature values withheld, certificates as fingerprints; each signed element begins "
        "with a SIGNED comment.",
    )
