"""Serve a Flask app under granian (Rust HTTP server, WSGI interface), from Python, on one address.

Why granian, and not gunicorn's threaded workers any more, is in docs/architecture.md ("Serving"): request
heads are read by granian's Rust event loop, so slow or idle clients cost a socket, not one of the Python
threads that run the app, and a head must arrive within HEADER_DEADLINE_MS; a request also costs about
half the CPU. (A request body is still read by the app's thread: see "Serving" for that limit.) The app is
built once, in this process, before the workers fork (keys and key rings are created once), then every
worker serves that same app.

`WEB_WORKERS` worker processes (default 2), each with `WEB_THREADS` threads running the app (default 8):
the same knobs, with the same meaning, as under gunicorn. `WEB_TLS_CERTFILE` and `WEB_TLS_KEYFILE` (PEM,
the key PKCS#8) make the app serve https itself; it then also sends Strict-Transport-Security (behind a
TLS-terminating proxy, the proxy sets it).

Behind nginx (the replicated stack), `WEB_TRUSTED_PROXIES` (addresses or networks, comma-separated) names
the proxies whose `X-Real-IP` is the client's address: throttles and audit records then see the person's
address, not the proxy's. From anyone else the header is ignored. Every request gets an ID
(sso_common/request_id.py) before anything logs, and metrics are summed over the workers through a private
folder made here (sso_common/metrics.py).
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sso_common.logs import EscapeControlCharacters, configure_logging
from sso_common.request_id import RequestId

# Query strings can carry authorization codes and state: the access log records the path only.
ACCESS_LOG_FORMAT = '%s "%s %s" %s %s %d.%06ds'  # address "METHOD /path" status bytes seconds
HEADER_DEADLINE_MS = 10_000  # a request head (line and headers) must arrive within this, or the connection closes
HSTS = "max-age=31536000"
_access_logger = logging.getLogger("sso.access")


class AccessLog:
    """WSGI middleware writing one access line per request, in the format gunicorn wrote before:
    `127.0.0.1 "GET /healthz" 200 52 0.001234s` (address, method, path without query, status, body bytes
    as declared by Content-Length or "-", seconds until the app answered)."""

    def __init__(self, app: Callable):
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        answer: dict[str, Any] = {}

        def recording_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
            answer["status"], answer["headers"] = status, headers
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        try:
            return self.app(environ, recording_start_response)
        finally:
            elapsed = time.perf_counter() - started
            status = str(answer.get("status", "500")).split(" ", 1)[0]
            length = next((v for k, v in answer.get("headers", ()) if k.lower() == "content-length"), "-")
            _access_logger.info(
                ACCESS_LOG_FORMAT,
                environ.get("REMOTE_ADDR", "-"),
                environ.get("REQUEST_METHOD") or "-",
                environ.get("PATH_INFO") or "-",
                status,
                length,
                int(elapsed),
                int(elapsed % 1 * 1_000_000),
            )


class StrictTransportSecurity:
    """WSGI middleware adding Strict-Transport-Security to every answer (only used when serving https)."""

    def __init__(self, app: Callable):
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        def with_hsts(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
            if not any(name.lower() == "strict-transport-security" for name, _ in headers):
                headers = [*headers, ("Strict-Transport-Security", HSTS)]
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        return self.app(environ, with_hsts)


class ProcessEnvironmentOut:
    """WSGI middleware removing from the environ what granian copies there from the process environment
    (it starts every request's environ from os.environ, CGI-style): a variable such as HTTP_PROXY or
    HTTP_AUTHORIZATION in the server's environment would otherwise look like a request header."""

    def __init__(self, app: Callable):
        self.app = app
        self.names = {name: value for name, value in os.environ.items() if name.startswith("HTTP_")}

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        for name, value in self.names.items():
            if environ.get(name) == value and name != "HTTP_HOST":
                del environ[name]
        return self.app(environ, start_response)


class TrustedProxy:
    """WSGI middleware: behind a proxy named in `trusted` (WEB_TRUSTED_PROXIES), the client's address is the
    proxy's `X-Real-IP` (nginx sets it from the connection, replacing what a client sent)."""

    def __init__(self, app: Callable, trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]):
        self.app, self.trusted = app, trusted

    @classmethod
    def from_environment(cls, app: Callable, value: str | None = None) -> Callable:
        value = os.environ.get("WEB_TRUSTED_PROXIES", "") if value is None else value
        names = [part.strip() for part in value.split(",") if part.strip()]
        if not names:
            return app
        try:
            return cls(app, [ipaddress.ip_network(name, strict=False) for name in names])
        except ValueError as problem:
            raise SystemExit(f"WEB_TRUSTED_PROXIES: {problem}") from None

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        client = environ.get("HTTP_X_REAL_IP", "").strip()
        if client and self._trusted(environ.get("REMOTE_ADDR", "")):
            try:
                ipaddress.ip_address(client)
            except ValueError:
                pass
            else:
                environ["sso.proxy_address"], environ["REMOTE_ADDR"] = environ.get("REMOTE_ADDR"), client
        return self.app(environ, start_response)


class _KnownThreadCount(logging.Filter):
    """Drops granian's start-up warning that more threads than 2 x cores + 1 "seem quite high": the apps'
    threads mostly wait on the network (STS, the upstream IdP, SP metadata), so WEB_THREADS is deliberate."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Configuration allows spawning up to")


def _granian_logging() -> dict:
    """granian's own loggers, written like the apps' lines (one line per record, escaped)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"escape": {"()": EscapeControlCharacters}, "threads": {"()": _KnownThreadCount}},
        "formatters": {"generic": {"format": "%(asctime)s %(levelname)s [-] granian: %(message)s"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "generic",
                "filters": ["threads", "escape"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {"_granian": {"handlers": ["console"], "propagate": False}},
    }


class Profiled:
    """WSGI middleware for developers (WEB_PROFILE=<folder>): each request's CPU in the app, per function, with
    cProfile on the request's thread (thread CPU time, waits excluded), added up per worker process and written
    to `<folder>/<pid>.prof` every 50 requests (read it with `python -m pstats`)."""

    def __init__(self, app: Callable, folder: str, every: int = 50):
        import cProfile
        import threading

        self.app, self.path, self.every = app, Path(folder) / f"{os.getpid()}.prof", every
        self._profile, self._lock, self._count = cProfile.Profile, threading.Lock(), 0
        self._stats: Any = None

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        import pstats

        profile = self._profile(time.thread_time)
        profile.enable()
        try:
            return list(self.app(environ, start_response))
        finally:
            profile.disable()
            with self._lock:
                self.path = self.path.with_name(f"{os.getpid()}.prof")  # the worker's own, after the fork
                if self._stats is None:
                    self._stats = pstats.Stats(profile)
                else:
                    self._stats.add(profile)
                self._count += 1
                if self._count % self.every == 0:
                    self._stats.dump_stats(self.path)


def wrap(app: Callable, *, access: bool, tls: bool) -> Callable:
    """The app as served: no process environment in the environ, a request ID, the client's address from a
    trusted proxy, the access log, HSTS over https (and, for developers, WEB_PROFILE: see Profiled)."""
    served: Callable = StrictTransportSecurity(app) if tls else app
    served = AccessLog(served) if access else served
    served = TrustedProxy.from_environment(served)
    served = ProcessEnvironmentOut(RequestId(served))
    folder = os.environ.get("WEB_PROFILE")
    return Profiled(served, folder) if folder else served


def serve(
    app_factory: Callable,
    host: str,
    port: int,
    *,
    workers: int | None = None,
    threads: int | None = None,
    access_log: bool = True,
    certfile: str | None = None,
    keyfile: str | None = None,
) -> None:
    """Serve in the foreground until SIGTERM or SIGINT."""
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server import Server

    workers = workers or int(os.environ.get("WEB_WORKERS", "2"))
    threads = threads or int(os.environ.get("WEB_THREADS", "8"))
    certfile = certfile or os.environ.get("WEB_TLS_CERTFILE") or None
    keyfile = keyfile or os.environ.get("WEB_TLS_KEYFILE") or None
    if bool(certfile) != bool(keyfile):
        raise SystemExit("serving https needs both WEB_TLS_CERTFILE and WEB_TLS_KEYFILE")
    configure_logging()
    refuse_taken_port(bind_address(host, port), port)
    metrics_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # an operator's own folder is kept
        from sso_common.metrics import enable_multiprocess

        metrics_dir = tempfile.mkdtemp(prefix="sso-metrics-")  # 0700: ours only
        enable_multiprocess(Path(metrics_dir))
    built = app_factory()
    app = wrap(built, access=access_log, tls=bool(certfile))
    level = os.environ.get("LOG_LEVEL", "info").lower()
    server = Server(
        "sso_common.serve:app",  # a name for granian's logs: the app itself comes from the loader below
        address=bind_address(host, port),
        port=port,
        interface=Interfaces.WSGI,
        workers=workers,
        blocking_threads=threads,
        http=HTTPModes.http1,
        websockets=False,
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_DEADLINE_MS, keep_alive=True),
        log_level=LogLevels(level) if level in LogLevels.__members__ else LogLevels.info,
        log_dictconfig=_granian_logging(),
        ssl_cert=Path(certfile) if certfile else None,
        ssl_key=Path(keyfile) if keyfile else None,
        workers_kill_timeout=5,
    )
    freeze_startup_heap()
    # Workers are forked from this process (Linux), so the loader hands each of them the app built above; it
    # runs in the worker, where it also starts the app's background jobs (threads do not survive a fork).
    try:
        server.serve(target_loader=lambda *_: start_in_worker(built, app), wrap_loader=False)
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def freeze_startup_heap() -> None:
    """Put what start-up made (modules, the app, its config and keys: it lives as long as the process) out of
    the garbage collector's reach, just before the workers fork. Every full collection in a worker walked it
    all, holding the GIL (the portal's 100,000 objects: 21 ms in process; full collections took 57-75 ms under
    load, one every few hundred sign-ins), and wrote its bookkeeping into each object, so each worker copied
    the memory pages it shares with the others."""
    gc.collect()
    gc.freeze()


WORKER_START = "worker_start"  # app.extensions[WORKER_START]: callables each worker process runs once, at its start


def start_in_worker(built: Any, served: Callable) -> Callable:
    """Run the app's worker-start callables (its background jobs, e.g. a lease-holding sender) in this worker."""
    for start in getattr(built, "extensions", {}).get(WORKER_START, ()):
        start()
    return served


def refuse_taken_port(address: str, port: int) -> None:
    """Stop if something already listens on `address:port`. granian binds with SO_REUSEPORT, so without this
    check a second server on a taken port starts without error and the kernel splits the connections between
    the two (seen as a test stack whose portal answered some requests from the AWS emulator)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free to serve on
        try:
            probe.bind((address, port))
        except OSError as error:
            raise SystemExit(f"cannot listen on {address}:{port}: {error.strerror} (another server has it)") from None


def bind_address(host: str, port: int) -> str:
    """The IP address to listen on for `host` (granian binds addresses, not names): its first IPv4 address,
    as gunicorn bound before (clients of "localhost" fall back from ::1 to 127.0.0.1)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise SystemExit(f"cannot listen on {host}: {error.strerror}") from None
    found.sort(key=lambda entry: entry[0] != socket.AF_INET)
    return str(found[0][4][0])


def add_serve_command(commands, run: Callable, what: str) -> None:
    """The `serve` sub-command every service's CLI has."""
    command = commands.add_parser("serve", help=f"run the {what} (granian)")
    command.add_argument("--host", help="address to listen on (default: the host of its public URL)")
    command.add_argument("--port", type=int, help="port (default: the port of its public URL)")
    command.add_argument("--workers", type=int, help="worker processes (default: $WEB_WORKERS or 2)")
    command.add_argument("--certfile", help="serve https with this PEM certificate (default: $WEB_TLS_CERTFILE)")
    command.add_argument("--keyfile", help="and this PKCS#8 PEM key (default: $WEB_TLS_KEYFILE)")
    command.set_defaults(run=run)


def serve_at(app_factory: Callable, public_url: str, args: argparse.Namespace, **options) -> None:
    """Serve on the address of `public_url` unless the command line says otherwise."""
    parts = urlsplit(public_url)
    port = args.port or parts.port or (443 if parts.scheme == "https" else 80)
    serve(
        app_factory,
        args.host or parts.hostname or "127.0.0.1",
        port,
        workers=args.workers,
        certfile=getattr(args, "certfile", None),
        keyfile=getattr(args, "keyfile", None),
        **options,
    )
