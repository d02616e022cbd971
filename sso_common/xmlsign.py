"""Enveloped XML signatures placed where SAML schemas require them (shared by every SAML signer).

signxml appends `<ds:Signature>` as the document root's last child unless it finds a placeholder, and
SAML validators reject that position: in an Assertion or a Response the signature must follow the
`<saml:Issuer>`. `sign_element` puts the placeholder there and signs with RSA-SHA256 and exclusive
c14n (what SAML deployments expect), with the already loaded key (parsing PEM per call is ~40x slower). The
reference is looked up by SAML's `ID` attribute only: signxml otherwise searches the whole document for `Id`
first, then `ID` (an XPath scan of every attribute each, about a tenth of a millisecond per signature).
"""

from __future__ import annotations

from lxml import etree
from signxml import XMLSigner
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

from sso_common.keys import SigningIdentity

DS_NAMESPACE = "http://www.w3.org/2000/09/xmldsig#"


class _Sha1Signer(XMLSigner):
    """signxml refuses SHA-1 by default, rightly. Only the mock IdP's `refused_algorithm` fault asks for it,
    to show that relying parties refuse it too."""

    def check_deprecated_methods(self):
        pass


def sign_element(
    root: etree._Element,
    element_id: str,
    signing_identity: SigningIdentity,
    after: etree._Element,
    *,
    sha1: bool = False,
) -> etree._Element:
    """A signed copy of `root` in which the element with ID `element_id` carries a signature right after
    `after` (its Issuer). `root` itself is left unchanged. Call again on the result to sign an enclosing
    element too, innermost first. `sha1` signs with RSA-SHA1 and a SHA-1 digest (deprecated: for showing
    that verifiers refuse it, never for a real signature)."""
    placeholder = etree.Element(f"{{{DS_NAMESPACE}}}Signature", Id="placeholder", nsmap={"ds": DS_NAMESPACE})
    after.addnext(placeholder)
    try:
        return (_Sha1Signer if sha1 else XMLSigner)(
            signature_algorithm=SignatureMethod.RSA_SHA1 if sha1 else SignatureMethod.RSA_SHA256,
            digest_algorithm=DigestAlgorithm.SHA1 if sha1 else DigestAlgorithm.SHA256,
            c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
        ).sign(
            root,
            key=signing_identity.key,
            cert=[signing_identity.certificate],
            reference_uri=f"#{element_id}",
            id_attribute="ID",
        )
    finally:
        parent = placeholder.getparent()
        if parent is not None:
            parent.remove(placeholder)
