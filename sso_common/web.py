"""Flask glue shared by every service: health check, security headers, error pages, secrets, CSRF.

Bad input always gets a clear 4xx: an HTML page for browsers, JSON for API clients. Internal errors
are logged with a reference and shown without details.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import uuid
from pathlib import Path

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    jsonify,
    render_template,
    request,
    session,
)
from jinja2 import TemplateNotFound
from werkzeug.exceptions import HTTPException

from sso_common.keys import create_private

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 256 * 1024  # no legitimate login, SAML message or API call comes close

_ERROR_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }} - {{ service }}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#16191f}
h1{font-size:1.5rem}p.ref{color:#5f6b7a;font-size:.875rem}</style></head>
<body><main><h1>{{ title }}</h1><p>{{ message }}</p>
{% if reference %}<p class="ref">Reference: {{ reference }}</p>{% endif %}
<p><a href="{{ home }}">Back to the start page</a></p></main></body></html>"""


class UserFacingError(Exception):
    """An error whose message is safe to show (no secret, no internal detail)."""

    def __init__(self, message: str, status: int = 400, title: str = "Something is wrong with this request"):
        super().__init__(message)
        self.message, self.status, self.title = message, status, title


def wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return request.is_json or best == "application/json" and not request.accept_mimetypes["text/html"]


def error_response(message: str, status: int, title: str | None = None, reference: str | None = None) -> Response:
    title = title or ("Too many attempts" if status == 429 else "Something is wrong with this request")
    if wants_json():
        body = jsonify(error=title, error_description=message, **({"reference": reference} if reference else {}))
        return Response(body.get_data(), status=status, mimetype="application/json")
    context = {"title": title, "message": message, "reference": reference, "service": _service_name(), "home": "/"}
    try:  # the app's own look when it has an error page, a plain page otherwise
        html = render_template("error.html", **context)
    except TemplateNotFound:
        html = _plain_page(context)
    except Exception as error:  # an error page must never fail: e.g. the state store is what broke
        log.warning("the error page could not be rendered (%s: %s); using the plain one", type(error).__name__, error)
        html = _plain_page(context)
    return Response(html, status=status, mimetype="text/html")


def _plain_page(context: dict) -> str:
    """The plain error page straight from Jinja: Flask's rendering would run the app's context processors,
    which may need the very store that failed."""
    return current_app.jinja_env.from_string(_ERROR_PAGE).render(**context)


def _service_name() -> str:
    from flask import current_app

    return current_app.config.get("SERVICE_TITLE", "Service")


def load_or_create_secret(path: Path) -> bytes:
    """A random secret persisted in the instance folder (Flask's cookie-signing key)."""
    if path.exists():
        return path.read_bytes()
    secret = secrets.token_bytes(32)
    return secret if create_private(path, secret) else path.read_bytes()


def install_common(app: Flask, service_title: str, *, secure_cookies: bool) -> None:
    app.config.update(
        SERVICE_TITLE=service_title,
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        MAX_FORM_MEMORY_SIZE=MAX_REQUEST_BYTES,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure_cookies,
    )

    health = Blueprint("health", __name__)

    @health.get("/healthz")
    def healthz():
        return jsonify(status="ok", service=service_title)

    app.register_blueprint(health)

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; form-action 'self' http: https:; frame-ancestors 'none'",
        )
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.errorhandler(UserFacingError)
    def user_facing(error: UserFacingError):
        log.info("refused %s %s: %s", request.method, request.path, error.message)
        return error_response(error.message, error.status, error.title)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        messages = {
            400: "The request could not be understood.",
            404: "Not found: there is nothing at this address.",
            405: "This address does not accept that method.",
            413: "The request is too large.",
            429: "Too many attempts. Wait a few minutes and try again.",
        }
        status = error.code or 400
        title = "Not found" if status == 404 else None
        return error_response(messages.get(status, error.description or "The request was refused."), status, title)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        reference = uuid.uuid4().hex[:12]
        log.exception("internal error (reference %s) on %s %s", reference, request.method, request.path)
        return error_response("Something went wrong on our side.", 500, "Internal error", reference)


def is_local_path(target: str) -> bool:
    r"""A path on this site, safe to redirect to after a login (no open redirect).

    Control characters are refused outright: Werkzeug cleans the Location header with urlsplit, which
    drops tabs and newlines, so "/\t/evil.example" would leave as "//evil.example"."""
    return (
        isinstance(target, str)
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and target.isprintable()
        and target.isascii()
        and len(target) <= 2048
    )


# --- CSRF for HTML forms: a per-browser token kept in Flask's signed session cookie -------------


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    expected = session.get("csrf")
    sent = request.form.get("csrf_token", "")
    if not expected or not hmac.compare_digest(expected, sent):
        raise UserFacingError(
            "This form has expired or did not come from this site. Go back, reload the page and try again.",
            400,
            "Form expired",
        )
