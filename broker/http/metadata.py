"""What the broker publishes about itself for other parties to trust:

- `/saml/metadata`: its SAML service-provider metadata, toward the upstream SAML IdPs: the one SP entity
  ID, every SAML upstream's ACS and SLO address, the AuthnRequest signing certificate;
- `/saml/metadata/<upstream id>`: the same for one upstream only (its ACS and SLO), for an IdP that
  should know only its own endpoints;
- `/saml/idp-metadata`: its identity-provider metadata, toward the AWS accounts (what provisioning
  registers in each account's IAM);
- `/oidc/jwks.json`: the public key of its private_key_jwt client authentication, toward OpenID Providers.
None of them needs an upstream to be up."""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify

from broker.aws.assertion import idp_metadata_xml
from broker.connectors.saml import SAMLConnector, sp_metadata
from broker.http.context import state

blueprint = Blueprint("metadata", __name__)
SAML_METADATA = "application/samlmetadata+xml"


def _saml_connectors() -> list[SAMLConnector]:
    return [c for c in state().connectors.values() if isinstance(c, SAMLConnector)]


@blueprint.get("/saml/metadata")
def sp_metadata_all():
    connectors = _saml_connectors()
    if not connectors:
        abort(404)
    return Response(sp_metadata(connectors), mimetype=SAML_METADATA)


@blueprint.get("/saml/metadata/<upstream_id>")
def sp_metadata_one(upstream_id: str):
    connector = state().connectors.get(upstream_id)
    if not isinstance(connector, SAMLConnector):
        abort(404)
    return Response(connector.sp_metadata_xml(), mimetype=SAML_METADATA)


@blueprint.get("/saml/idp-metadata")
def aws_idp_metadata():
    portal = state()
    xml = idp_metadata_xml(portal.settings.idp_entity_id, portal.idp_signing, f"{portal.settings.portal_url}/")
    return Response(xml, mimetype=SAML_METADATA)


@blueprint.get("/oidc/jwks.json")
def client_jwks():
    answer = jsonify(state().oidc_client_key.public_jwks())
    answer.headers["Cache-Control"] = "public, max-age=3600"
    return answer
