"""Flask glue shared by every service: health check, security headers, error pages, secrets, CSRF.

Bad input always gets a clear 4xx: an HTML page for browsers, JSON for API clients. Internal errors
are logged with a reference and shown without details.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import BadSignature
from jinja2 import TemplateNotFound
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from sso_common.json_input import StrictJSONProvider
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


# Sent with every answer unless the view set the header itself.
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    (
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; form-action 'self' http: https:; frame-ancestors 'none'",
    ),
    ("Cache-Control", "no-store"),
)


class UserFacingError(Exception):
    """An error whose message is safe to show (no secret, no internal detail)."""

    def __init__(self, message: str, status: int = 400, title: str = "Something is wrong with this request"):
        super().__init__(message)
        self.message, self.status, self.title = message, status, title


def wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return request.is_json or best == "application/json" and not request.accept_mimetypes["text/html"]


# What an HTTP refusal raised by Flask or Werkzeug says, in every format (pages and each API's own).
REFUSALS = {
    400: "The request could not be understood.",
    404: "Not found: there is nothing at this address.",
    405: "This address does not accept that method.",
    413: "The request is too large.",
    429: "Too many attempts. Wait a few minutes and try again.",
}


def refusal_message(refusal: HTTPException) -> str:
    return REFUSALS.get(refusal.code or 400, "The request was refused.")


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
    return TextResponse(html, status=status, mimetype="text/html")


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


class TextResponse(Response):
    """Flask's response, with a str body sent as UTF-8 even when it holds a lone surrogate (as '?'): input is
    checked (sso_common.json_input), but a page showing what a store kept from before must not fail with a
    500 after the request's work is done."""

    def set_data(self, value: bytes | str) -> None:
        super().set_data(value.encode("utf-8", "replace") if isinstance(value, str) else value)


def install_common(app: Flask, service_title: str, *, secure_cookies: bool) -> None:
    app.session_interface = LazySessionInterface()
    app.json = StrictJSONProvider(app)  # request.get_json(): a lone surrogate or deep nesting is a 400
    app.response_class = TextResponse
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

    @app.before_request
    def method_refusal_in_its_blueprints_format() -> None:
        """A method an address does not take is found while routing, before Flask knows whose address it is,
        so the app's HTML page answered it on every API. Given the address's rule (for a method it takes), the
        405 is raised as the blueprint's and answered by its own error handler, in its own format."""
        refusal = request.routing_exception
        if not isinstance(refusal, MethodNotAllowed) or not refusal.valid_methods:
            return  # every other request: nothing more done
        adapter = current_app.create_url_adapter(request)
        try:
            if adapter is not None:
                # the first in order: the same rule (and metric label) in every process
                request.url_rule, _ = adapter.match(method=sorted(refusal.valid_methods)[0], return_rule=True)
        except HTTPException:
            pass  # the address matched no rule after all: the app's own answer

    @app.after_request
    def security_headers(response: Response) -> Response:
        """The headers of SECURITY_HEADERS a view did not set itself (one pass over the response's headers)."""
        present = {name.lower() for name in response.headers.keys()}
        for name, value in SECURITY_HEADERS:
            if name.lower() not in present:
                response.headers.add(name, value)
        return response

    @app.errorhandler(UserFacingError)
    def user_facing(error: UserFacingError):
        log.info("refused %s %s: %s", request.method, request.path, error.message)
        return error_response(error.message, error.status, error.title)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 400
        title = "Not found" if status == 404 else None
        message = REFUSALS.get(status, error.description or "The request was refused.")
        return in_its_own_words(error_response(message, status, title), error)

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


# --- Flask's session cookie, decoded only when a request reads it ----------------------------------


class LazySession(SecureCookieSession):
    """Flask's signed-cookie session, whose cookie is verified and decoded at its first use in the request
    (only the HTML forms read it, for their CSRF token): an API call, a redirect or an answer that never looks at
    it costs no signature check and writes no cookie back."""

    def __init__(self, load: Callable[[], dict | None]):
        super().__init__()
        self._pending: Callable[[], dict | None] | None = load

    @property
    def pending(self) -> bool:
        """Not read (nor changed) in this request."""
        return self._pending is not None

    def _load(self) -> None:
        load, self._pending = self._pending, None
        if load is not None:
            data = load()
            if data:
                dict.update(self, data)  # the stored state, not a change

    def __getitem__(self, key: str) -> Any:
        self._load()
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._load()
        return super().get(key, default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._load()
        return super().setdefault(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        self._load()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._load()
        super().__delitem__(key)

    def pop(self, key: str, *default: Any) -> Any:
        self._load()
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        self._load()
        return super().popitem()

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._load()
        super().update(*args, **kwargs)

    def clear(self) -> None:
        self._load()
        super().clear()

    def __contains__(self, key: object) -> bool:
        self._load()
        return super().__contains__(key)

    def __iter__(self) -> Iterator[str]:
        self._load()
        return super().__iter__()

    def __len__(self) -> int:
        self._load()
        return super().__len__()

    def keys(self) -> Any:
        self._load()
        return super().keys()

    def values(self) -> Any:
        self._load()
        return super().values()

    def items(self) -> Any:
        self._load()
        return super().items()

    def copy(self) -> dict[str, Any]:
        self._load()
        return dict(super().items())

    def __eq__(self, other: object) -> bool:
        self._load()
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        self._load()
        return super().__repr__()


class LazySessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions (same cookie, key, salt and checks), opened lazily (LazySession)."""

    def open_session(self, app: Flask, request: Any) -> SecureCookieSession | None:
        if not app.secret_key:
            return None
        value = request.cookies.get(self.get_cookie_name(app))
        if not value:
            return self.session_class()
        return LazySession(lambda: self._decode(app, value))

    def _decode(self, app: Flask, value: str) -> dict | None:
        serializer = self.get_signing_serializer(app)
        if serializer is None:
            return None
        try:
            return serializer.loads(value, max_age=int(app.permanent_session_lifetime.total_seconds()))
        except BadSignature:
            return None

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        if isinstance(session, LazySession) and session.pending:
            return  # never read in this request: the browser's cookie stands as it is
        super().save_session(app, session, response)


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


def in_its_own_words(response: Response, refusal: HTTPException) -> Response:
    """`response`, an API's own answer to an HTTP refusal raised by Flask or Werkzeug, given the refusal's status
    and, on a 405, the Allow header it must carry (RFC 9110 15.5.6)."""
    response.status_code = refusal.code or 400
    methods = getattr(refusal, "valid_methods", None)
    if refusal.code == 405 and methods:
        response.headers["Allow"] = ", ".join(sorted(methods))
    return response


def bearer_api_error(status: int, error: str, description: str, *, realm: str) -> Response:
    """An admin API's refusal, as OAuth 2.0 bearer-token APIs answer: JSON `error` and `error_description`, and
    on a 401 the `WWW-Authenticate: Bearer` challenge naming `realm`."""
    response = jsonify(error=error, error_description=description)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = f'Bearer realm="{realm}"'
    return response


def bearer_api_refusals(blueprint: Blueprint, realm: str) -> None:
    """Flask's and Werkzeug's refusals in a bearer-token admin API (a method the address does not take, a body
    too large or unreadable) answered in its JSON, not the HTML page."""

    @blueprint.errorhandler(HTTPException)
    def refused(error: HTTPException) -> Response:
        answer = bearer_api_error(error.code or 400, "invalid_request", refusal_message(error), realm=realm)
        return in_its_own_words(answer, error)


def bearer_token_matches(authorization: str | None, expected: str) -> bool:
    """Whether an Authorization header carries `expected` as its Bearer token (compared in constant time); an
    empty `expected` (the API is off) matches nothing."""
    scheme, _, sent = (authorization or "").partition(" ")
    return (
        bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), expected.encode())
    )
