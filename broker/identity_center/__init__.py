"""The domain behind the IAM Identity Center compatible API: registered clients, device authorizations,
authorization codes, grants and tokens (`grants`), their pure helpers (`codes`), and page tokens
(`pagination`). No HTTP here: `broker.http.sso_oidc` and `broker.http.sso_portal` speak AWS's wire
format on top of it.
"""
