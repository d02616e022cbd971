"""Run a Flask app under gunicorn (a production WSGI server), from Python, on one address."""

from __future__ import annotations

import os
from typing import Callable

from gunicorn.app.base import BaseApplication

# Query strings can carry authorization codes and state: the access log records the path only.
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss'


class _Gunicorn(BaseApplication):
    def __init__(self, app_factory: Callable, options: dict):
        self._factory, self._options = app_factory, options
        super().__init__()

    def load_config(self):
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        return self._factory()


def serve(app_factory: Callable, host: str, port: int, *, workers: int | None = None, threads: int = 8,
          access_log: bool = True) -> None:
    """Serve in the foreground. The app is built once before forking, so keys are created once."""
    workers = workers or int(os.environ.get("WEB_WORKERS", "2"))
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
        "errorlog": "-",
        "loglevel": os.environ.get("LOG_LEVEL", "info").lower(),
        "control_socket_disable": True,  # one shared default path would collide between servers
        "limit_request_line": 8190,
        "limit_request_fields": 100,
        "limit_request_field_size": 8190,
    }
    _Gunicorn(app_factory, options).run()
