"""The access portal: accounts and roles, and a role's credentials in a panel of the accounts page.

Credentials are issued by a POST (CSRF-protected) and answered in the body of the accounts page, that
role's panel open, marked no-store: never in a URL, never kept by the server. With JavaScript the page
sends that POST itself and moves the panel into the page already open, so the address stays `/` and a
reload issues nothing. Without JavaScript the answer is the page itself; a GET of /credentials (a
bookmark, a reload after the answer) comes back to the accounts page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Blueprint, make_response, redirect, render_template, request

from broker.core import evidence
from broker.core.catalogue import catalogue
from broker.core.entitlements import Entitlement
from broker.core.explain import FAILED_ISSUANCE, ISSUED, REFUSED_ISSUANCE
from broker.core.exports import CredentialOptions, credential_options
from broker.core.issuance import RoleCredentials
from broker.errors import AccessEnded, CredentialIssueError, EntitlementError, RevalidationUnavailable, StsRefused
from broker.http import explain
from broker.http.context import (
    PortalState,
    request_origin,
    session_ended,
    session_unavailable,
    signed_in,
    signed_in_session,
    state,
    still_signed_in,
)
from sso_common.web import UserFacingError, check_csrf

log = logging.getLogger(__name__)
blueprint = Blueprint("portal", __name__)
PANEL_HEADER = "X-Portal-Fragment"  # "panel": portal.js asks for the role's panel alone (POST /credentials)


@dataclass(frozen=True)
class Issued:
    """Credentials just issued, as their panel shows them."""

    entitlement: Entitlement
    credentials: RoleCredentials
    options: CredentialOptions
    explanation_url: str | None = None  # "How did I get here?" for these credentials

    @property
    def expires_epoch(self) -> int:
        return int(self.credentials.expiration.timestamp())


def _accounts_page(filter_text: str = "", issued: Issued | None = None):
    portal = state()
    session = signed_in_session()
    identity = session.identity
    open_account = issued.entitlement.account_id if issued else ""
    return make_response(
        render_template(
            "accounts.html",
            identity=identity,
            upstream=portal.connectors.get(session.upstream_id),
            catalogue=catalogue(identity, portal.settings.access, filter_text, open_account),
            is_admin=portal.settings.admin_group in identity.groups,
            explanation_url="/explain",
            issued=issued,
            **_command_line(portal),
        )
    )


def _command_line(portal: PortalState) -> dict[str, str]:
    """What each role's panel shows for the command line: the start URL and the region."""
    return {"start_url": f"{portal.settings.portal_url}/start", "region": portal.settings.access.region}


def _issued_panel(issued: Issued):
    """The role's panel alone, its credentials in it: what portal.js puts in place of the panel it asked from
    (the whole accounts page otherwise: 0.6 ms more to render, for what the script drops)."""
    return make_response(
        render_template(
            "_panel.html", entitlement=issued.entitlement, shown=True, issued=issued, **_command_line(state())
        )
    )


@blueprint.get("/")
@signed_in
def accounts():
    return _accounts_page(request.args.get("filter", ""))


@blueprint.get("/start")
@blueprint.get("/start/")
def start():
    """The start URL, as IAM Identity Center writes it (`https://.../start`, `.../start/#/`)."""
    return redirect("/", code=302)


@blueprint.get("/credentials")
def credentials_address():
    """The address of the credentials form, opened directly: the accounts page (which signs in first)."""
    return redirect("/", code=303)


@blueprint.post("/credentials")
@signed_in
def credentials():
    """Credentials go in the page body of a POST answer (never a URL), marked no-store."""
    check_csrf()
    session = signed_in_session()
    identity = session.identity
    account_id = request.form.get("account_id", "")[:32]
    permission_set = request.form.get("permission_set", "")[:64]
    story = explain.story_reference(session=session)  # its ID: the story itself is not read

    def explained(outcome: str, reason: str = "") -> str | None:
        """This request in the session's "How did I get here?"; its link (the page shows it)."""
        url = explain.record_issuance(
            story,
            channel="portal",
            account_id=account_id,
            permission_set=permission_set,
            outcome=outcome,
            reason=reason,
        )
        explain.offer(url)
        return url

    with evidence.recording():  # what the entitlement check and STS record, for the explanation
        try:
            entitlement, issued = state().issuance.issue(
                identity, account_id, permission_set, request_origin(), still_admitted=lambda: still_signed_in(session)
            )
        except RevalidationUnavailable as unavailable:  # (the guard, asked again once AWS answered)
            return session_unavailable(unavailable.reason)
        except AccessEnded as ended:
            return session_ended(ended.reason)
        except EntitlementError as refusal:
            explained(REFUSED_ISSUANCE, refusal.reason)
            raise UserFacingError(refusal.reason, 403, "Access denied") from None
        except StsRefused as refusal:
            log.warning("STS refused a role request: %s", refusal.code)
            explained(FAILED_ISSUANCE, str(refusal))
            raise UserFacingError(
                "AWS refused to issue credentials for this role. An administrator has been "
                "notified through the audit trail.",
                502,
                "AWS refused the request",
            ) from None
        except CredentialIssueError as failure:
            explained(FAILED_ISSUANCE, str(failure))
            raise UserFacingError(
                "AWS could not be reached to issue credentials. Try again in a minute.", 503, "AWS unavailable"
            ) from None
        url = explained(ISSUED)
    settings = state().settings
    options = credential_options(entitlement, issued, settings.aws_endpoint_url_for_clients, settings.access.region)
    shown = Issued(entitlement, issued, options, url)
    wants_panel = request.headers.get(PANEL_HEADER) == "panel"
    response = _issued_panel(shown) if wants_panel else _accounts_page(issued=shown)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    response.vary.add(PANEL_HEADER)
    return response
