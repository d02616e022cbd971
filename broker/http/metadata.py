"""SAML metadata the broker publishes: as a service provider (toward the corporate IdP) and as the
identity provider of the AWS accounts (what provisioning registers in each account's IAM)."""

from __future__ import annotations

from flask import Blueprint, Response, abort

from broker.aws.assertion import idp_metadata_xml
from broker.connectors.saml import SAMLConnector
from broker.http.context import state

blueprint = Blueprint("metadata", __name__)


@blueprint.get("/saml/metadata")
def sp_metadata():
    saml = [c for c in state().connectors.values() if isinstance(c, SAMLConnector)]
    if not saml:
        abort(404)
    return Response(saml[0].sp_metadata_xml(), mimetype="application/samlmetadata+xml")


@blueprint.get("/saml/idp-metadata")
def aws_idp_metadata():
    portal = state()
    xml = idp_metadata_xml(portal.settings.idp_entity_id, portal.idp_signing, f"{portal.settings.portal_url}/")
    return Response(xml, mimetype="application/samlmetadata+xml")
