"""`python -m employee_directory serve | check-config`."""

from __future__ import annotations

import argparse
import logging
import sys
from urllib.parse import urlsplit

from employee_directory.settings import ConfigError, load_settings, refuse_aws_keys_in_environment
from sso_common.logs import configure_logging
from sso_common.serve import serve as serve_app


def serve(host: str | None, port: int | None) -> int:
    from employee_directory.app import create_app

    refuse_aws_keys_in_environment()
    settings = load_settings()
    public = urlsplit(settings.url)
    host = host or public.hostname or "127.0.0.1"
    port = port or public.port or (443 if public.scheme == "https" else 80)
    logging.getLogger("employee_directory").info(
        "the Employee Directory is on %s (listening on %s:%d)", settings.url, host, port
    )
    # The project's one serving stack (granian; docs/architecture.md "Serving"), as a company's app would
    # run under a production server: a library, not one of the project's servers.
    serve_app(lambda: create_app(settings), host, port)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m employee_directory", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the app (granian: $WEB_WORKERS processes of $WEB_THREADS threads)")
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
