"""The access portal: accounts and roles, and programmatic access credentials for one role."""

from __future__ import annotations

import logging
from itertools import groupby

from flask import Blueprint, make_response, render_template, request

from broker.errors import CredentialIssueError, EntitlementError, StsRefused
from broker.http.context import request_origin, signed_in, signed_in_session, state
from sso_common.web import UserFacingError, check_csrf

log = logging.getLogger(__name__)
blueprint = Blueprint("portal", __name__)


@blueprint.get("/")
@signed_in
def accounts():
    identity = signed_in_session().identity
    entitlements = state().issuance.entitlements(identity)
    by_account = [
        (key, list(roles)) for key, roles in groupby(entitlements, key=lambda e: (e.account_id, e.account_name))
    ]
    is_admin = state().settings.admin_group in identity.groups
    return render_template("accounts.html", identity=identity, accounts=by_account, is_admin=is_admin)


@blueprint.post("/credentials")
@signed_in
def credentials():
    """Credentials go in the page body of a POST answer (never a URL), marked no-store."""
    check_csrf()
    identity = signed_in_session().identity
    account_id = request.form.get("account_id", "")[:32]
    permission_set = request.form.get("permission_set", "")[:64]
    try:
        entitlement, issued = state().issuance.issue(identity, account_id, permission_set, request_origin())
    except EntitlementError as refusal:
        raise UserFacingError(refusal.reason, 403, "Access denied") from None
    except StsRefused as refusal:
        log.warning("STS refused a role request: %s", refusal.code)
        raise UserFacingError(
            "AWS refused to issue credentials for this role. An administrator has been "
            "notified through the audit trail.",
            502,
            "AWS refused the request",
        ) from None
    except CredentialIssueError:
        raise UserFacingError(
            "AWS could not be reached to issue credentials. Try again in a minute.", 503, "AWS unavailable"
        ) from None
    page = render_template(
        "credentials.html",
        entitlement=entitlement,
        credentials=issued,
        expires_epoch=int(issued.expiration.timestamp()),
    )
    response = make_response(page)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response
