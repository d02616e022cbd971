"""pysaml2's IdP (`saml2.server.Server`) as an independent SAML upstream for the connector tests, set up
the way an ADFS or Entra ID farm is: claim-URI attribute names, RSA-SHA256 signatures on the assertion,
signed AuthnRequests required, SP endpoints trusted only from the SP's metadata.

No HTTP server runs the IdP: a test hands it the connector's redirect URL (`answer`) and gets the form
fields the browser would post to the ACS. Its metadata can be published by tests.support.saml_sp's
MetadataSite, to test metadata fetching and certificate rollover."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from sso_common.keys import SigningIdentity, load_or_create_signing_identity
from tests.support.saml_sp import XMLSEC1

ADFS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/"
ADFS_GROUP = "http://schemas.xmlsoap.org/claims/Group"
ENTRA_GROUPS = "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"
ENTRA_OBJECT_ID = "http://schemas.microsoft.com/identity/claims/objectidentifier"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
PASSWORD = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
MFA = "http://schemas.microsoft.com/claims/multipleauthn"  # what ADFS and Entra ID report after MFA...
AUTHN_METHODS = "http://schemas.microsoft.com/claims/authnmethodsreferences"  # ...in this attribute


@dataclass
class Answer:
    """What the IdP's auto-post form would send to the ACS, and where."""

    acs_url: str
    fields: dict[str, str]
    request_id: str


class PySAML2IdP:
    def __init__(self, directory: Path, entity_id: str, sso_url: str, sp_metadata: str):
        self.directory, self.entity_id, self.sso_url = directory, entity_id, sso_url
        self.sp_metadata = sp_metadata
        self.rotate()

    def rotate(self) -> SigningIdentity:
        """A new signing key and certificate (an IdP's certificate rollover); `metadata()` changes with it."""
        from saml2 import BINDING_HTTP_REDIRECT
        from saml2.config import IdPConfig
        from saml2.saml import NAME_FORMAT_URI, NAMEID_FORMAT_PERSISTENT, NAMEID_FORMAT_TRANSIENT
        from saml2.server import Server

        name = uuid.uuid4().hex[:8]
        self.identity = load_or_create_signing_identity(self.directory, name, f"ADFS signing {name}")
        key_file, cert_file = self.directory / f"{name}.key", self.directory / f"{name}.crt"
        config = IdPConfig()
        config.load(
            {
                "entityid": self.entity_id,
                "xmlsec_binary": XMLSEC1,
                "allow_unknown_attributes": True,
                "key_file": str(key_file),
                "cert_file": str(cert_file),
                "metadata": {"inline": [self.sp_metadata]},
                "service": {
                    "idp": {
                        "endpoints": {"single_sign_on_service": [(self.sso_url, BINDING_HTTP_REDIRECT)]},
                        "name_id_format": [NAMEID_FORMAT_PERSISTENT, NAMEID_FORMAT_TRANSIENT],
                        "want_authn_requests_signed": True,
                        "signing_algorithm": RSA_SHA256,
                        "digest_algorithm": SHA256,
                        "policy": {"default": {"lifetime": {"minutes": 5}, "name_form": NAME_FORMAT_URI}},
                    }
                },
            }
        )
        self.server = Server(config=config)
        return self.identity

    def metadata(self) -> str:
        from saml2.metadata import create_metadata_string

        return create_metadata_string(None, config=self.server.config, sign=False).decode()

    def answer(
        self,
        redirect_url: str,
        attributes: dict[str, list[str]],
        *,
        name_id: str = "S-1-5-21-1004",
        name_id_format: str | None = None,
        context: str = PASSWORD,
    ) -> Answer:
        """Receive the connector's signed AuthnRequest (signature checked against the SP metadata, the ACS
        taken from that metadata only) and answer it for a signed-in person with these claims."""
        from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
        from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID

        query = {k: v[0] for k, v in parse_qs(urlsplit(redirect_url).query).items()}
        request = self.server.parse_authn_request(
            query["SAMLRequest"],
            BINDING_HTTP_REDIRECT,
            relay_state=query.get("RelayState"),
            sigalg=query.get("SigAlg"),
            signature=query.get("Signature"),
        )
        message = request.message
        where = self.server.response_args(message, [BINDING_HTTP_POST])  # raises for an ACS not in metadata
        response = self.server.create_authn_response(
            identity=attributes,
            in_response_to=message.id,
            destination=where["destination"],
            sp_entity_id=message.issuer.text,
            name_id=NameID(format=name_id_format or NAMEID_FORMAT_PERSISTENT, text=name_id),
            authn={"class_ref": context, "authn_auth": self.entity_id},
            sign_assertion=True,
            sign_response=False,
            sign_alg=RSA_SHA256,
            digest_alg=SHA256,
        )
        encoded = base64.b64encode(str(response).encode()).decode()
        return Answer(where["destination"], {"SAMLResponse": encoded, "RelayState": query["RelayState"]}, message.id)
