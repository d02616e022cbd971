"""Consent for third parties: an application that registered itself at run time (an OIDC client by dynamic
registration, a SAML SP through the admin API) gets a person's data only after that person allowed it.

Example Corp's own applications (the clients and SPs of config/idp.yaml) need no consent. A person's answer
is remembered per (person, application) in the state store for `consent_lifetime_seconds` (idp.yaml), with
what was allowed: an OIDC client that later asks for more scopes asks again. The page is a form with a CSRF
token; a denial is answered to the application in its protocol (OIDC `access_denied`, SAML `RequestDenied`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app, make_response, render_template
from werkzeug.wrappers import Response

from sso_common.records import Record
from sso_common.store import StateStore
from sso_common.web import csrf_token

KIND = "consent"
DEFAULT_LIFETIME = 30 * 24 * 3600


@dataclass(frozen=True)
class ConsentRecord(Record):
    """What a person allowed an application, and when."""

    granted: tuple[str, ...]  # OIDC scopes, or the SAML attributes released
    granted_at: int


class Consents:
    def __init__(self, store: StateStore, lifetime: int = DEFAULT_LIFETIME):
        self.store, self.lifetime = store, lifetime

    @staticmethod
    def _key(username: str, party: str) -> str:
        return f"{party}\x00{username}"

    def given(self, username: str, party: str, wanted: tuple[str, ...]) -> bool:
        """Whether the person allowed `party` (e.g. "oidc:CLIENT_ID") at least `wanted`, and still does."""
        record = self.store.get(KIND, self._key(username, party))
        return record is not None and set(wanted) <= set(ConsentRecord.from_record(record).granted)

    def remember(self, username: str, party: str, granted: tuple[str, ...], now: int) -> None:
        self.store.put(KIND, self._key(username, party), ConsentRecord(tuple(granted), now).to_record(), self.lifetime)


def consent_page(
    *, party_name: str, party_url: str, releases: list[str], username: str, action: str, hidden: dict[str, str]
) -> Response:
    """The question, as a page with Allow and Deny (one form, CSRF-protected)."""
    lifetime = current_app.extensions["idp"].settings.consent_lifetime
    page = render_template(
        "consent.html",
        party_name=party_name,
        party_site=urlsplit(party_url).hostname or party_url,
        releases=releases,
        username=username,
        remember_days=max(1, lifetime // 86400),
        action=action,
        hidden=hidden,
        csrf_token=csrf_token(),
    )
    response = make_response(page, 200)
    response.headers["Cache-Control"] = "no-store"
    return response
