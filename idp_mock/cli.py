"""`idp-mock`: run the mock IdP and manage it (password hashes, key rotation, config check)."""

from __future__ import annotations

import argparse
import getpass
import sys

from sso_common.config import ConfigError
from sso_common.serve import add_serve_command, serve_at


def _serve(args) -> int:
    from idp_mock.app import create_app
    from idp_mock.settings import load_settings

    settings = load_settings(args.config)
    serve_at(lambda: create_app(settings), settings.issuer, args)
    return 0


def _hash_password(args) -> int:
    from idp_mock.passwords import hash_password

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
    from idp_mock.settings import load_settings

    settings = load_settings(args.config)
    print(f"OK: {len(settings.directory.employees)} users, {len(settings.directory.groups)} groups")
    return 0


def _rotate_keys(args) -> int:
    from idp_mock.oidc_provider.keys import rotate_signing_keys
    from idp_mock.settings import load_settings

    kid = rotate_signing_keys(load_settings(args.config))
    print(f"New active signing key: {kid} (the previous key stays published)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="idp-mock", description=__doc__)
    parser.add_argument("--config", help="path to idp.yaml (default: config/idp.yaml or $IDP_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)
    add_serve_command(commands, _serve, "IdP")
    commands.add_parser(
        "hash-password", help="read a password (prompt or stdin), print its argon2id hash"
    ).set_defaults(run=_hash_password)
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
