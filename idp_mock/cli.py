"""`idp-mock`: run the mock IdP and manage it (password hashes, key rotation, config check)."""

from __future__ import annotations

import argparse
import getpass
import sys
from urllib.parse import urlsplit

from sso_common.config import ConfigError


def _serve(args) -> int:
    from sso_common.serve import serve

    from .app import create_app
    from .settings import load_settings

    settings = load_settings(args.config)
    parts = urlsplit(settings.issuer)
    host = args.host or parts.hostname
    port = args.port or parts.port or (443 if parts.scheme == "https" else 80)
    serve(lambda: create_app(settings), host, port, workers=args.workers)
    return 0


def _hash_password(args) -> int:
    from .passwords import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != password:
            print("The passwords differ.", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 12:
        print("Use at least 12 characters.", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def _check_config(args) -> int:
    from .settings import load_settings

    settings = load_settings(args.config)
    print(f"OK: {len(settings.directory.employees)} users, {len(settings.directory.groups)} groups")
    return 0


def _rotate_keys(args) -> int:
    from .oidc.keys import rotate_signing_keys
    from .settings import load_settings

    kid = rotate_signing_keys(load_settings(args.config))
    print(f"New active signing key: {kid} (the previous key stays published)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="idp-mock", description=__doc__)
    parser.add_argument("--config", help="path to idp.yaml (default: config/idp.yaml or $IDP_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the IdP (gunicorn)")
    serve.add_argument("--host", help="address to listen on (default: the issuer's host)")
    serve.add_argument("--port", type=int, help="port (default: the issuer's port)")
    serve.add_argument("--workers", type=int, help="worker processes (default: $WEB_WORKERS or 2)")
    serve.set_defaults(run=_serve)
    commands.add_parser("hash-password", help="read a password (prompt or stdin), print its argon2id hash") \
        .set_defaults(run=_hash_password)
    commands.add_parser("check-config", help="validate the config and exit").set_defaults(run=_check_config)
    commands.add_parser("rotate-keys", help="rotate the OIDC token signing keys").set_defaults(run=_rotate_keys)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as error:
        print(f"idp-mock: configuration error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
