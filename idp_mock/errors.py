"""Every failure the IdP raises on purpose, in one tree, and what each becomes at the edge.

A message is always safe to show and log: it never holds a password, a session ID, a token or a key.

    IdPError
    ├── Refused                an SP's SAML request is refused (unreadable, unsigned, unknown SP or ACS URL,
    │   │                      replayed, expired): a 400 page to the person, never a status response to the
    │   │                      SP (the refusal may concern the very signature or ACS URL it would need)
    │   └── BadSignature           its signature does not verify: the SP's metadata is fetched again once
    │                              (the SP may have rotated its key), then the same 400 page
    ├── MetadataUnavailable    an SP with a metadata_url has no usable metadata, so its requests cannot be
    │                          verified: a 503 page (fail closed)
    ├── MetadataError          SP metadata cannot be used: 400 `invalid_metadata` from the SP registration
    │                          API; fetched from a metadata_url, it is logged and the SP's requests meet
    │                          MetadataUnavailable
    ├── InvalidOption          an SP's options break a rule (config.check_options): a ConfigError at
    │                          start-up, a MetadataError at run-time registration
    └── AlreadyConfigured      run-time registration of an SP the config file defines: 409 `conflict`

Refused and MetadataUnavailable are also `sso_common.web.UserFacingError`s, the shared page error: the
error handler shows the page with their status, or answers JSON `error`/`error_description` to an API
client. The registration API answers JSON `error`/`error_description` itself.

Outside the tree:
- `sso_common.web.UserFacingError`, raised as such for a person's browser: the login pages (an invalid
  link, an expired MFA step: 400), the OIDC browser endpoints until the client and its redirect URI are
  verified (unknown client, unregistered redirect or post-logout URI, expired request: 400), and the SAML
  pages (an expired sign-in 400, an unknown SP at IdP-initiated start 404, an SP that does not accept it
  or an AWS SP the person has no role in 403).
- authlib's `OAuth2Error` (raised by authlib and by oidc_provider): at the token, userinfo and registration
  endpoints JSON `error`/`error_description` with authlib's status; at the authorization endpoint an
  error redirect to the verified client, or a 400 page when there is no verified redirect URI.
- `sso_common.config.ConfigError`: the config is invalid; the IdP does not start (`idp-mock` exits with 2).
- SAML status responses (NoPassive, Requester for a LogoutRequest about someone else) are answers posted
  to a verified SP, not errors. The IdP's only outbound calls fetch SP metadata, so it never answers
  502/504: an unreachable SP is MetadataUnavailable (503).
Anything else (including the ValueError and LookupError guards of invariants) is a bug: logged with a
reference and answered with a generic 500.
"""

from __future__ import annotations

from sso_common.web import UserFacingError


class IdPError(Exception):
    """Base of the IdP's deliberate failures."""


class Refused(IdPError, UserFacingError):
    """An SP's SAML request that cannot be accepted; the message tells the person why."""

    def __init__(self, message: str):
        super().__init__(message, 400, "The application's request was refused")


class BadSignature(Refused):
    """A signature that does not verify with the certificate at hand (which may be outdated)."""

    def __init__(self) -> None:
        super().__init__("The request's signature is not valid.")


class MetadataUnavailable(IdPError, UserFacingError):
    """No usable metadata for an SP that needs it: its requests cannot be verified, so none is accepted."""

    def __init__(self, sp_name: str):
        super().__init__(
            f"Example Corp cannot verify requests from {sp_name} right now: the application's SAML metadata "
            "(with its signing certificate) could not be fetched. Try again in a few minutes. If this keeps "
            "happening, tell the IT service desk.",
            503,
            "The application cannot be verified",
        )


class MetadataError(IdPError, ValueError):
    """SP metadata that cannot be used; the message says why, for the admin who sent or published it."""


class InvalidOption(IdPError):
    """An SP option breaks a rule shared by config and registration: `setting` and what is wrong with it."""

    def __init__(self, setting: str, problem: str):
        super().__init__(setting, problem)
        self.setting, self.problem = setting, problem


class AlreadyConfigured(IdPError):
    """The entity ID belongs to an SP from the config file, which run-time registration cannot replace."""
