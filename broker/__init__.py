"""The access portal (the broker): corporate identity in, short-lived AWS role credentials out.

One direction of flow, a package per stage:
  connectors/       where a login enters (OIDC, SAML) and becomes an `Identity`
  core/             entitlements from the access config, issuance and its audit, portal sessions
  aws/              the signed assertion toward AWS, the STS exchange, provisioning
  identity_center/  the domain behind the AWS-compatible sso-oidc / sso API (grants, codes, pages)
  http/             Flask blueprints that glue the stages together, and AWS's wire format
`app.create_app` builds it; `cli` is the `broker` command; `errors` is the exception tree.
"""
