"""Run a Flask app under gunicorn (a production WSGI server), from Python, on one address."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from urllib.parse import urlsplit

from gunicorn import glogging
from gunicorn.app.base import BaseApplication

# Query strings can carry authorization codes and state: the access log records the path only.
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss'


class _Logger(glogging.Logger):
    """gunicorn's logger, with an access line built from the six values ACCESS_LOG_FORMAT uses. gunicorn's
    own builds every atom it knows, all request headers and the whole WSGI environ, for each request:
    7% of the IdP's CPU on the protocol endpoints. The line written is the same."""

    def access(self, resp, req, environ, request_time):
        if self.cfg.access_log_format != ACCESS_LOG_FORMAT:
            return super().access(resp, req, environ, request_time)
        if not self.access_log_enabled:
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        sent = getattr(resp, "sent", None)
        self.access_log.info(
            '%s "%s %s" %s %s %d.%06ds',
            environ.get("REMOTE_ADDR", "-"),
            environ.get("REQUEST_METHOD") or "-",
            environ.get("PATH_INFO") or "-",
            status,
            "-" if sent is None else sent,
            request_time.seconds,
            request_time.microseconds,
        )


class _Gunicorn(BaseApplication):
    def __init__(self, app_factory: Callable, options: dict):
        self._factory, self._options = app_factory, options
        super().__init__()

    def load_config(self):
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        return self._factory()


def serve(
    app_factory: Callable,
    host: str,
    port: int,
    *,
    workers: int | None = None,
    threads: int | None = None,
    access_log: bool = True,
    header_map: str = "drop",
) -> None:
    """Serve in the foreground. The app is built once before forking, so keys are created once.

    `header_map` is gunicorn's rule for header names with underscores: dropped by default; the portal
    needs "dangerous" because AWS's sso API sends its token in `x-amz-sso_bearer_token`."""
    workers = workers or int(os.environ.get("WEB_WORKERS", "2"))
    threads = threads or int(os.environ.get("WEB_THREADS", "8"))
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "preload_app": True,
        "timeout": 60,
        "graceful_timeout": 5,
        "keepalive": 5,
        "accesslog": "-" if access_log else None,
        "access_log_format": ACCESS_LOG_FORMAT,
        "logger_class": _Logger,
        "errorlog": "-",
        "loglevel": os.environ.get("LOG_LEVEL", "info").lower(),
        "control_socket_disable": True,  # one shared default path would collide between servers
        "limit_request_line": 8190,
        "limit_request_fields": 100,
        "limit_request_field_size": 8190,
        "header_map": header_map,
    }
    _Gunicorn(app_factory, options).run()


def add_serve_command(commands, run: Callable, what: str) -> None:
    """The `serve` sub-command every service's CLI has."""
    command = commands.add_parser("serve", help=f"run the {what} (gunicorn)")
    command.add_argument("--host", help="address to listen on (default: the host of its public URL)")
    command.add_argument("--port", type=int, help="port (default: the port of its public URL)")
    command.add_argument("--workers", type=int, help="worker processes (default: $WEB_WORKERS or 2)")
    command.set_defaults(run=run)


def serve_at(app_factory: Callable, public_url: str, args: argparse.Namespace, **options) -> None:
    """Serve on the address of `public_url` unless the command line says otherwise."""
    parts = urlsplit(public_url)
    port = args.port or parts.port or (443 if parts.scheme == "https" else 80)
    serve(app_factory, args.host or parts.hostname or "127.0.0.1", port, workers=args.workers, **options)
