"""Every failure the broker raises on purpose, in one tree, and what each becomes at the edge.

The core and the connectors raise these; only `broker.http` turns them into answers. A message is
always safe to show, log and audit: it never holds a token, an assertion, a password or a credential.

    BrokerError
    ├── LoginFailed            a sign-in is refused: an error page (400) and an audit record
    │   └── UpstreamUnavailable    the identity provider is down or answers garbage: 502 page
    │       ├── UpstreamTimeout        it did not answer within the call's deadline: 504 page
    │       └── UpstreamBusy           too many sign-ins already wait for it: 503 page, at once
    ├── EntitlementError       a role is refused: 403 page, or ForbiddenException on the sso API
    │   ├── NotEntitled            no assignment gives it (the API says only "No access")
    │   └── MfaRequired            the permission set needs a second factor the sign-in did not use
    ├── CredentialIssueError   minting credentials failed
    │   ├── IdentityRefused        no assertion can name this person: becomes NotEntitled (403)
    │   ├── StsUnavailable         STS unreachable or failing (5xx): 503 page / ServiceUnavailableException
    │   └── StsRefused             STS refused the request (4xx): 502 page / InternalServerException
    ├── IdentityCenterError    the Identity Center compatible API refuses: AWS's JSON error format,
    │                          named by `aws_error` (status and OAuth code in broker.http.aws_wire)
    └── AccessEnded            a portal session or command-line sign-in may no longer act (the person was
        │                      disabled, deleted or revoked, signed out at the IdP, or the session is past its
        │                      cap): the session ends; a 401 page naming why, UnauthorizedException or
        │                      InvalidGrantException on the API
        └── RevalidationUnavailable  the upstream could not be asked whether the person may still act: this
                                     request is refused (503 page / ServiceUnavailableException), the session kept

Outside the tree: `sso_common.config.ConfigError` stops a service at start-up (exit code 2), and
`sso_common.web.UserFacingError` is the web layer's own "show this page with this status".
"""

from __future__ import annotations


class BrokerError(Exception):
    """Base of the broker's deliberate failures."""


class LoginFailed(BrokerError):
    """The upstream answer is not acceptable. `reason` is safe to show, log and audit (no secrets)."""

    def __init__(self, reason: str, status: int = 400):
        super().__init__(reason)
        self.reason, self.status = reason, status


class UpstreamUnavailable(LoginFailed):
    """The IdP is down or answers garbage: a 502 page, not a 500."""

    status_code = 502

    def __init__(self, reason: str):
        super().__init__(reason, self.status_code)


class UpstreamTimeout(UpstreamUnavailable):
    """The IdP did not answer a call within its deadline (slow, or trickling its answer): 504."""

    status_code = 504


class UpstreamBusy(UpstreamUnavailable):
    """As many sign-ins as this upstream may hold already wait for it: refused at once (503), so a slow
    IdP cannot take every worker thread of the portal."""

    status_code = 503


class EntitlementError(BrokerError):
    """The request is refused; `reason` is safe to show the person."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class NotEntitled(EntitlementError):
    pass


class MfaRequired(EntitlementError):
    pass


class CredentialIssueError(BrokerError):
    """Base of the credential issuer's failures; messages are safe to log and name no secret."""


class IdentityRefused(CredentialIssueError):
    """No assertion can be made for this person (e.g. nothing usable as a session name): not AWS's fault."""


class StsUnavailable(CredentialIssueError):
    """STS did not answer in time, refused the connection, or failed on its side (5xx): try again later."""


class StsRefused(CredentialIssueError):
    """STS answered with an error about this request (4xx): retrying the same request will not help."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(f"STS refused the role request: {code}: {message}")


class IdentityCenterError(BrokerError):
    """A refusal by the rules of the sso-oidc / sso API; `aws_error` is the name AWS gives it."""

    aws_error = "InvalidRequestException"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidClient(IdentityCenterError):
    aws_error = "InvalidClientException"


class UnauthorizedClient(IdentityCenterError):
    aws_error = "UnauthorizedClientException"


class InvalidGrant(IdentityCenterError):
    aws_error = "InvalidGrantException"


class ExpiredToken(IdentityCenterError):
    aws_error = "ExpiredTokenException"


class AuthorizationPending(IdentityCenterError):
    aws_error = "AuthorizationPendingException"


class AccessDenied(IdentityCenterError):
    aws_error = "AccessDeniedException"


class SlowDown(IdentityCenterError):
    aws_error = "SlowDownException"


class NotSignedIn(IdentityCenterError):
    """The bearer token is unknown, expired, or its sign-in has ended."""

    aws_error = "UnauthorizedException"


class ServiceUnavailable(IdentityCenterError):
    """Something the answer depends on (the person's identity provider) did not answer: try again later."""

    aws_error = "ServiceUnavailableException"


class AccessEnded(BrokerError):
    """A session or grant may no longer act; `reason` says why, safe to show (no secret, no internal detail)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RevalidationUnavailable(AccessEnded):
    """The upstream did not answer the re-validation: refused for now, not ended."""
