"""The directory: list and search the employees (the DynamoDB table), show their photos and, for the
editors group, upload new ones (S3, under the uploads prefix: the only place the app's role may write)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for

from employee_directory import web
from employee_directory.auth import current_user, login_required
from employee_directory.aws import MAX_PHOTO_BYTES, PHOTO_TYPES, Employee, photo_type
from employee_directory.web import PageError

log = logging.getLogger(__name__)

blueprint = Blueprint("directory", __name__)
MAX_QUERY_LENGTH = 100
# A photo is shown as an image, never run: no script, no style from it, not even when opened on its own.
PHOTO_POLICY = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


@blueprint.get("/")
@login_required
def employees():
    query = request.args.get("q", "").strip()
    if len(query) > MAX_QUERY_LENGTH:
        raise PageError(f"Search for at most {MAX_QUERY_LENGTH} characters.")
    everyone = web.aws().employees()
    words = query.lower().split()
    shown = [employee for employee in everyone if employee.matches(words)] if words else everyone
    return render_template("employees.html", employees=shown, query=query, total=len(everyone))


def _employee(username: str) -> Employee:
    employee = web.aws().employee(username)
    if employee is None:
        abort(404)
    return employee


@blueprint.get("/employees/<username>")
@login_required
def employee(username: str):
    user = current_user()
    settings = web.settings()
    return render_template(
        "employee.html",
        employee=_employee(username),
        may_edit=bool(user and user.may_edit(settings)),
        editors_group=settings.editors_group,
        max_megabytes=MAX_PHOTO_BYTES // 1024 // 1024,
        accepted=",".join([*PHOTO_TYPES, "image/webp"]),
    )


@blueprint.get("/employees/<username>/photo")
@login_required
def photo(username: str):
    found = web.aws().photo(_employee(username))
    if found is None:
        abort(404)
    response = Response(found.body, mimetype=found.content_type)
    response.headers["Content-Security-Policy"] = PHOTO_POLICY
    response.headers["Content-Disposition"] = "inline"
    return response


@blueprint.post("/employees/<username>/photo")
@login_required
def upload(username: str):
    user = current_user()
    settings = web.settings()
    if user is None or not user.may_edit(settings):
        raise PageError(
            f"Only members of {settings.editors_group} may change photos. That is the Employee Directory's own "
            "rule: its AWS role could write the photo, the app decides who may ask it to.",
            403,
            "Not allowed",
        )
    employee = _employee(username)
    upload = request.files.get("photo")
    if upload is None or not upload.filename:
        raise PageError("Choose a photo to upload.")
    data = upload.stream.read(MAX_PHOTO_BYTES + 1)
    if len(data) > MAX_PHOTO_BYTES:
        raise PageError(f"That photo is too large: at most {MAX_PHOTO_BYTES // 1024 // 1024} MB.", 413)
    content_type = photo_type(data)
    if content_type is None:
        raise PageError("That file is not a PNG, JPEG, GIF or WebP image.", 400, "Not a photo")
    key = web.aws().put_photo(employee, data, content_type, uploaded_by=user.username)
    log.info(
        "%s uploaded a photo of %s (%s, %d bytes) to %s", user.username, employee.username, content_type, len(data), key
    )
    flash(f"The new photo of {employee.display_name} is saved.")
    return redirect(url_for("directory.employee", username=employee.username))
