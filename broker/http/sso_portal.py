"""The sso portal API (GetRoleCredentials, ListAccounts, ListAccountRoles, Logout), as botocore calls it.

Callers authenticate with the access token from CreateToken in the `x-amz-sso_bearer_token` header;
the token is good only while the portal session that approved its sign-in is live.
Credentials come from `Issuance.issue`, so the entitlement check and the audit record are the
portal's own; `roleName` is the permission set's name, as in IAM Identity Center.
"""

from __future__ import annotations

import logging
import re
from itertools import groupby

from flask import Blueprint, Response, current_app, jsonify, request

from broker.core import evidence
from broker.core.explain import FAILED_ISSUANCE, ISSUED, REFUSED_ISSUANCE
from broker.core.identity import Identity
from broker.errors import CredentialIssueError, EntitlementError, IdentityCenterError, MfaRequired, StsRefused
from broker.http import explain
from broker.http.aws_wire import ApiError, error_response, install_error_handlers
from broker.http.context import API_CHANNEL, request_origin, state
from broker.identity_center.pagination import BadPageRequest, PageTokens, page_size, paginate

log = logging.getLogger(__name__)
blueprint = Blueprint("sso_portal", __name__)
install_error_handlers(blueprint)

BEARER_HEADER = "x-amz-sso_bearer_token"
ACCOUNT_ID = re.compile(r"\d{12}")
NO_ACCESS = "No access"  # what Identity Center says, whether the account, the role or both are not yours


def _caller() -> Identity:
    return state().grants.bearer(request.headers.get(BEARER_HEADER))[0]


def _account_id() -> str:
    account_id = request.args.get("account_id", "")
    if not ACCOUNT_ID.fullmatch(account_id):
        raise ApiError("InvalidRequestException", "account_id must be a 12-digit AWS account ID.")
    return account_id


def _secret_key() -> bytes:
    key = current_app.secret_key
    return key.encode() if isinstance(key, str) else bytes(key or b"")


def _page(items: list, context: str) -> tuple[list, dict]:
    try:
        page, next_token = paginate(
            items,
            PageTokens(_secret_key()),
            context,
            request.args.get("next_token"),
            page_size(request.args.get("max_result")),
        )
    except BadPageRequest as problem:
        raise ApiError("InvalidRequestException", str(problem)) from None
    return page, ({"nextToken": next_token} if next_token else {})


@blueprint.get("/federation/credentials")
def get_role_credentials():
    identity, grant_id = state().grants.bearer(request.headers.get(BEARER_HEADER))
    account_id, role_name = _account_id(), request.args.get("role_name", "")
    if not role_name:
        raise ApiError("InvalidRequestException", "role_name is required.")
    if len(role_name) > 64:
        raise ApiError("InvalidRequestException", "role_name must be at most 64 characters.")

    def explained(outcome: str, reason: str = "") -> None:  # in the sign-in's "How did I get here?"
        story = explain.story_reference(grant_id=grant_id)
        explain.record_issuance(
            story, channel=API_CHANNEL, account_id=account_id, permission_set=role_name, outcome=outcome, reason=reason
        )

    with evidence.recording():
        try:
            _, issued = state().issuance.issue(
                identity,
                account_id,
                role_name,
                request_origin(API_CHANNEL),
                still_admitted=lambda: state().grants.still_current(grant_id),  # NotSignedIn: 401
            )
        except MfaRequired as refusal:
            explained(REFUSED_ISSUANCE, refusal.reason)
            raise ApiError("ForbiddenException", refusal.reason) from None
        except EntitlementError as refusal:
            explained(REFUSED_ISSUANCE, refusal.reason)
            raise ApiError("ForbiddenException", NO_ACCESS) from None
        except StsRefused as refusal:
            log.warning("STS refused a role request: %s", refusal.code)
            explained(FAILED_ISSUANCE, str(refusal))
            raise ApiError("InternalServerException", "AWS refused to issue credentials for this role.") from None
        except CredentialIssueError as failure:
            explained(FAILED_ISSUANCE, str(failure))
            raise ApiError("ServiceUnavailableException", "AWS could not be reached. Try again in a minute.") from None
        explained(ISSUED)
    return jsonify(
        roleCredentials={
            "accessKeyId": issued.access_key_id,
            "secretAccessKey": issued.secret_access_key,
            "sessionToken": issued.session_token,
            "expiration": int(issued.expiration.timestamp() * 1000),
        }
    )


@blueprint.get("/assignment/accounts")
def list_accounts():
    identity = _caller()
    accounts = [
        key for key, _ in groupby(state().issuance.entitlements(identity), key=lambda e: (e.account_id, e.account_name))
    ]
    page, more = _page(accounts, f"accounts\x00{identity.subject}")
    known = state().settings.access.accounts
    listed = [_account(account_id, name, known[account_id].email) for account_id, name in page]
    return jsonify(accountList=listed, **more)


def _account(account_id: str, name: str, email: str | None) -> dict:
    """An AccountInfo; emailAddress is optional in the API, left out for an account access.yaml gives none."""
    return {"accountId": account_id, "accountName": name, **({"emailAddress": email} if email else {})}


@blueprint.get("/assignment/roles")
def list_account_roles():
    identity = _caller()
    account_id = _account_id()
    roles = [e.permission_set for e in state().issuance.entitlements(identity) if e.account_id == account_id]
    if not roles:
        raise ApiError("ForbiddenException", NO_ACCESS)
    page, more = _page(roles, f"roles\x00{identity.subject}\x00{account_id}")
    return jsonify(roleList=[{"roleName": name, "accountId": account_id} for name in page], **more)


def logout() -> Response:
    """Logout (`POST /logout` with the bearer header; the portal's sign-out view hands it here): ends the
    whole command-line sign-in."""
    try:
        state().grants.logout(request.headers.get(BEARER_HEADER))
    except IdentityCenterError as refusal:
        return error_response(ApiError(refusal.aws_error, refusal.message))
    return Response(status=200)
