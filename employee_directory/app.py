"""The Flask application: `create_app(settings)`.

Blueprints: `auth` (sign-in through the IdP, sign-out), `directory` (the employees, their photos, uploads)
and `status` (who the app is in AWS, its credentials, and an action its role is denied). Every page but
/healthz and the sign-in needs a signed-in person. Bad input gets a clear 4xx page; AWS out of reach a
503 page that says what is missing; anything else a 500 page with a reference, the details in the log.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import uuid
from pathlib import Path

from botocore.exceptions import ClientError
from flask import Flask, Response, jsonify, render_template, request, session
from werkzeug.exceptions import HTTPException

from employee_directory import auth, directory, status
from employee_directory.aws import MAX_PHOTO_BYTES, AwsAccess, AwsUnavailable
from employee_directory.settings import Settings
from employee_directory.web import PageError, csrf_token

log = logging.getLogger(__name__)

TITLE = "Employee Directory"
COOKIE_NAME = "directory_session"  # its own name: cookies ignore ports, and the portal is on localhost too
MAX_REQUEST_BYTES = MAX_PHOTO_BYTES + 64 * 1024  # a photo and the form around it


def create_app(settings: Settings, aws: AwsAccess | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=_secret_key(settings.instance_dir),
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=settings.session_lifetime,
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        MAX_FORM_MEMORY_SIZE=MAX_REQUEST_BYTES,
    )
    app.extensions["directory_settings"] = settings
    app.extensions["directory_aws"] = aws or AwsAccess(settings)
    auth.init_app(app, settings)
    app.register_blueprint(auth.blueprint)
    app.register_blueprint(directory.blueprint)
    app.register_blueprint(status.blueprint)

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", service=TITLE)

    @app.context_processor
    def page_context():
        return {"user": auth.current_user(), "csrf_token": csrf_token, "service": TITLE}

    @app.before_request
    def check_csrf():
        if request.method == "POST":
            sent = request.form.get("csrf_token", "")
            if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
                raise PageError("This form has expired or did not come from this site: go back, reload, try again.")

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'none'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'",
        )
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.errorhandler(PageError)
    def page_error(error: PageError):
        log.info("refused %s %s: %s", request.method, request.path, error.message)
        return error_page(error.title, error.message, error.status)

    @app.errorhandler(AwsUnavailable)
    def aws_unavailable(error: AwsUnavailable):
        log.warning("AWS unavailable for %s %s: %s", request.method, request.path, error)
        return error_page("AWS is out of reach", str(error), 503)

    @app.errorhandler(ClientError)
    def aws_refused(error: ClientError):
        details = error.response.get("Error", {})
        log.warning("AWS refused %s for %s %s: %s", error.operation_name, request.method, request.path, details)
        message = (
            f"AWS refused {error.operation_name} with {details.get('Code', 'an error')}. "
            "The app's role may lack a permission it needs: see the status page."
        )
        return error_page("AWS refused the app", message, 502)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        messages = {
            400: "The request could not be understood.",
            403: "You may not do this here.",
            404: "There is nothing at this address.",
            405: "This address does not accept that method.",
            413: f"That is too large: a photo may be at most {MAX_PHOTO_BYTES // 1024 // 1024} MB.",
        }
        status = error.code or 500
        return error_page(error.name, messages.get(status, error.description or error.name), status)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        reference = uuid.uuid4().hex[:12]
        log.exception("unexpected error (reference %s) on %s %s", reference, request.method, request.path)
        return error_page("Something went wrong", f"This is our fault, not yours. Reference: {reference}.", 500)

    return app


def error_page(title: str, message: str, status: int) -> tuple[str, int]:
    return render_template("error.html", title=title, message=message, status=status), status


def _secret_key(instance_dir: Path) -> bytes:
    """The cookie-signing key, kept in the instance folder (owner-only) so sessions outlive a restart."""
    path = instance_dir / "secret-key"
    if path.exists():
        return path.read_bytes()
    instance_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(instance_dir, 0o700)
    key = secrets.token_bytes(32)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made meanwhile by another process: use theirs
        return path.read_bytes()
    with os.fdopen(descriptor, "wb") as file:
        file.write(key)
    return key
