"""`python -m employee_directory serve | check-config`."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
from urllib.parse import urlsplit

from werkzeug.serving import WSGIRequestHandler, make_server

from employee_directory.settings import ConfigError, load_settings, refuse_aws_keys_in_environment


class _OneLinePerRecord(logging.Filter):
    """Control characters escaped in every record: a request's path or an IdP's error is someone else's text,
    and must not start a line of its own in the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and record.exc_info[0] is not None:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, None
        record.msg = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in message)
        record.args = None
        return True


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_OneLinePerRecord())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


class _PathOnlyLog(WSGIRequestHandler):
    """One line per request, the path without its query string (the sign-in callback's carries a code)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = self.path.split("?", 1)[0]
        logging.getLogger("employee_directory.access").info(
            '%s "%s %s" %s %s', self.address_string(), self.command, path, code, size
        )


def serve(host: str | None, port: int | None) -> int:
    from employee_directory.app import create_app

    refuse_aws_keys_in_environment()
    settings = load_settings()
    public = urlsplit(settings.url)
    host = host or public.hostname or "127.0.0.1"
    port = port or public.port or (443 if public.scheme == "https" else 80)
    app = create_app(settings)
    server = make_server(_ipv4_first(host, port), port, app, threaded=True, request_handler=_PathOnlyLog)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    logging.getLogger("employee_directory").info(
        "the Employee Directory is on %s (listening on %s:%d)", settings.url, host, port
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _ipv4_first(host: str, port: int) -> str:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise SystemExit(f"cannot listen on {host}: {error.strerror}") from None
    found.sort(key=lambda entry: entry[0] != socket.AF_INET)
    return str(found[0][4][0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m employee_directory", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the app (one process, a thread per request)")
    run.add_argument("--host", help="address to listen on (default: the host of its url)")
    run.add_argument("--port", type=int, help="port (default: the port of its url)")
    commands.add_parser("check-config", help="validate the configuration and the environment, and exit")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        if args.command == "check-config":
            refuse_aws_keys_in_environment()
            settings = load_settings()
            print(
                f"OK: {settings.source}: the app at {settings.url}, signing in with {settings.issuer}, "
                f"table {settings.table}, bucket {settings.bucket_template}, editors: {settings.editors_group}"
            )
            return 0
        return serve(args.host, args.port)
    except ConfigError as error:
        print(f"employee-directory: configuration error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
