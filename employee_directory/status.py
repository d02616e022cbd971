"""How the app reaches AWS, made visible: who it is (sts:GetCallerIdentity, `assumed-role/EmployeeWebAppRole/
i-...`), where its credentials come from, when they were issued and expire, the rotations it went through
without a restart, and a button that tries what its role may not do (delete the photos bucket), to show
the AccessDenied: least privilege, visible."""

from __future__ import annotations

import logging

from flask import Blueprint, render_template

from employee_directory import web
from employee_directory.auth import login_required
from employee_directory.aws import Attempt, mask
from employee_directory.credential_source import SourceUnreadable, read_source

log = logging.getLogger(__name__)

blueprint = Blueprint("status", __name__)


def _page(attempt: Attempt | None = None):
    aws = web.aws()
    identity = aws.identity()
    credentials = aws.credential_view()
    try:
        source = read_source()
        source_problem = None
    except SourceUnreadable as problem:
        source, source_problem = None, str(problem)
    return render_template(
        "status.html",
        identity=identity,
        role=_role_of(identity["Arn"]),
        credentials=credentials,
        source=source,
        source_key=mask(source.access_key_id) if source else None,
        source_problem=source_problem,
        bucket=aws.bucket(),
        table=web.settings().table,
        attempt=attempt,
    )


def _role_of(arn: str) -> tuple[str, str] | None:
    """(role, session) of an assumed-role ARN."""
    parts = arn.split(":", 5)[-1].split("/")
    return (parts[1], parts[2]) if len(parts) == 3 and parts[0] == "assumed-role" else None


@blueprint.get("/status")
@login_required
def status():
    return _page()


@blueprint.post("/status/try-to-delete-the-bucket")
@login_required
def try_to_delete_the_bucket():
    attempt = web.aws().try_to_delete_the_bucket()
    if attempt.denied:
        log.info("s3:DeleteBucket on %s: %s, as it should be", attempt.resource, attempt.code)
    else:
        log.warning(
            "s3:DeleteBucket on %s was not denied (%s): the role is broader than it should be",
            attempt.resource,
            attempt.code,
        )
    return _page(attempt)
