"""OpenID Connect provider of the mock IdP."""


def register(app):
    """Scaffolding: replaced by the OIDC provider."""
