"""SAML 2.0 identity provider of the mock IdP."""


def register(app):
    """Scaffolding: replaced by the SAML IdP."""
