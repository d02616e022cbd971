"""The portal's HTTP edge: blueprints that only glue connectors, sessions, issuance and the Identity
Center domain together.

- pages for people: `login` (sign-in, sign-out), `portal` (accounts, credentials), `admin` (audit),
  `device` (approving a command-line sign-in), `metadata` (SAML metadata the broker publishes);
- `scim`: `/scim/v2`, where identity providers provision people and groups (broker/scim), in SCIM's format;
- AWS's APIs: `sso_oidc` and `sso_portal`, in AWS's wire format (`aws_wire`), and `portal_info`, what
  command-line clients read about the portal (its start URL, region, and the AWS emulator's address).
"""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from broker.http import admin, device, explain, login, metadata, portal, portal_info, sso_oidc, sso_portal

    for module in (login, portal, admin, metadata, device, sso_oidc, sso_portal, portal_info, explain):
        app.register_blueprint(module.blueprint)
    app.register_blueprint(explain.api)  # /token/explain, in the sso API's error format
    from broker.http import scim

    app.register_blueprint(scim.blueprint)  # /scim/v2, the SCIM service provider (broker/scim)
