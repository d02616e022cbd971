"""OpenID Connect Back-Channel Logout 1.0, the OP's side: when a person signs out of the IdP, every OIDC client of
that session with a `backchannel_logout_uri` gets a logout token, POSTed from the IdP straight to it.

The logout token (section 2.4) is a JWT signed with the IdP's ID token key, typed `logout+jwt`: iss, aud (the
client), iat, exp (two minutes), jti, the session's `sid` (the one its ID tokens carried) and the person's `sub`,
and the back-channel logout event; never a nonce. Each is sent from a daemon thread with a short deadline, so
a slow or absent relying party never holds up the sign-out page. A sign-out must not be lost to a relying party
that is restarting or whose store is down for a moment (the portal answers 503 with Retry-After then): no answer
or a 5xx is tried again, ATTEMPTS times in all, each time with a new token (a relying party that recorded the
first token's `jti` before failing would refuse the same token as a replay); 200 or 204 is delivered, a 4xx is the
relying party's final word (section 2.8). Every outcome is logged, never the token.
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from joserfc import jwt

from idp_mock.oidc_provider.keys import ALGORITHM
from idp_mock.session import OIDCParticipant, SessionRecord

log = logging.getLogger(__name__)

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
TOKEN_LIFETIME = 120
DEADLINE = 5.0  # seconds a relying party has to answer
ATTEMPTS = 3
PAUSE = 1.0  # seconds before the second attempt, doubled before the next, unless Retry-After asks for more
LONGEST_PAUSE = 10.0  # whatever Retry-After says: ATTEMPTS stay within TOKEN_LIFETIME


class BackChannelLogout:
    """The IdP's logout listener (idp_mock.session.LOGOUT_LISTENERS) for its OIDC clients."""

    def __init__(self, server: Any):
        self.server = server
        self.sent: list[threading.Thread] = []  # the deliveries under way (tests wait for them)

    def logout_token(self, client_id: str, sid: str, subject: str | None, now: int | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": self.server.issuer,
            "aud": client_id,
            "iat": issued,
            "exp": issued + TOKEN_LIFETIME,
            "jti": secrets.token_urlsafe(18),
            "sid": sid,
            "events": {LOGOUT_EVENT: {}},
        }
        if subject:
            claims["sub"] = subject
        keys = self.server.keys
        header = {"alg": ALGORITHM, "kid": keys.active_kid, "typ": "logout+jwt"}
        return jwt.encode(header, claims, keys.private_keys, algorithms=[ALGORITHM])

    def __call__(self, sid: str, record: SessionRecord) -> None:
        employee = self.server.directory.find(record.username)
        subject = employee.subject if employee is not None else None
        for participant in record.participants:
            if not isinstance(participant, OIDCParticipant):
                continue
            client = self.server.query_client(participant.client_id)
            uri = getattr(client, "backchannel_logout_uri", None)
            if client is None or not uri:
                continue
            token = functools.partial(self.logout_token, client.client_id, sid, subject)
            thread = threading.Thread(target=_deliver, args=(uri, token, client.client_id), daemon=True)
            thread.start()
            self.sent = [t for t in self.sent if t.is_alive()] + [thread]


def _deliver(uri: str, token: Callable[[], str], client_id: str, pause: float = PAUSE) -> None:
    """POST a logout token made by `token()` for each attempt to `uri` (see the module doc)."""
    for attempt in range(1, ATTEMPTS + 1):
        wait = pause * 2 ** (attempt - 1)
        try:
            answer = requests.post(
                uri, data={"logout_token": token()}, timeout=DEADLINE, allow_redirects=False, headers={"Accept": "*/*"}
            )
        except requests.RequestException as error:
            problem = type(error).__name__
        else:
            if answer.status_code in (200, 204):
                log.info("back-channel logout delivered to %s", client_id)
                return
            if answer.status_code < 500:
                log.warning("back-channel logout to %s refused: HTTP %s", client_id, answer.status_code)
                return
            problem = f"HTTP {answer.status_code}"
            wait = max(wait, _retry_after(answer.headers.get("Retry-After")))
        if attempt == ATTEMPTS:
            log.warning("back-channel logout to %s failed %s times, the last: %s", client_id, ATTEMPTS, problem)
            return
        wait = min(wait, LONGEST_PAUSE)
        log.info("back-channel logout to %s: %s; trying again in %.1f s", client_id, problem, wait)
        time.sleep(wait)


def _retry_after(value: str | None) -> float:
    """Retry-After in seconds (0 for an HTTP date or anything else: the pause doubles anyway)."""
    try:
        return max(0.0, float(value or 0))
    except ValueError:
        return 0.0
