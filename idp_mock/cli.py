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


def _directory(args) -> int:
    """Change the directory at run time, as the admin API does: the change is stored in the IdP's change log, where
    the running IdP's workers see it at their next request and its SCIM pusher sends it on."""
    from idp_mock.directory import ChangeRefused, LiveDirectory
    from idp_mock.passwords import hash_password
    from idp_mock.scim_push import sync_status
    from idp_mock.settings import load_settings
    from sso_common.store.registry import open_change_log, open_state_store

    settings = load_settings(args.config)
    live = LiveDirectory(settings.directory, open_change_log(settings.stores["changes"]))
    if args.action == "list":
        for employee in live.employees.values():
            state = " (disabled)" if employee.disabled else ""
            print(f"{employee.username}\t{employee.email}\t{','.join(employee.groups)}{state}")
        return 0
    if args.action == "status":
        import json

        targets = list(settings.provisioning.targets) if settings.provisioning else []
        print(json.dumps(sync_status(open_state_store(settings.stores["state"]), live.log, targets), indent=2))
        return 0
    change: dict = {"op": args.action.replace("-", "_"), "username": args.username}
    if args.action == "add":
        password = _read_password()
        if password is None:
            return 1
        change = {
            "op": "add_user",
            "user": {
                "username": args.username,
                "email": args.email,
                "name": args.name,
                "department": args.department or "",
                "groups": args.groups.split(",") if args.groups else [],
                "password_hash": hash_password(password),
            },
        }
    elif args.action == "delete":
        change["op"] = "delete_user"
    elif args.action in ("add-member", "remove-member"):
        change["group"] = args.group
    try:
        position, record = live.change(change)
    except ChangeRefused as refusal:
        print(f"idp-mock: refused: {refusal}", file=sys.stderr)
        return 1
    print(f"{record['op']} stored at position {position}; the running IdP pushes it to its SCIM targets")
    return 0


def _read_password() -> str | None:
    if sys.stdin.isatty():
        password = getpass.getpass("Password for the new user: ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 12:
        print("Use at least 12 characters.", file=sys.stderr)
        return None
    return password


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
    directory = commands.add_parser(
        "directory", help="change the directory at run time (stored, and pushed to the SCIM targets)"
    )
    actions = directory.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every user as the directory has them now").set_defaults(run=_directory)
    actions.add_parser("status", help="how far each SCIM target is pushed").set_defaults(run=_directory)
    for action, what in (("disable", "disable a user"), ("enable", "enable a user"), ("delete", "delete a user")):
        command = actions.add_parser(action, help=what)
        command.add_argument("username")
        command.set_defaults(run=_directory)
    add = actions.add_parser("add", help="add a user (the password is read from the terminal or standard input)")
    add.add_argument("username")
    add.add_argument("--email", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--department")
    add.add_argument("--groups", help="comma-separated groups of the directory")
    add.set_defaults(run=_directory)
    for action, what in (("add-member", "add a user to a group"), ("remove-member", "remove a user from a group")):
        command = actions.add_parser(action, help=what)
        command.add_argument("group")
        command.add_argument("username")
        command.set_defaults(run=_directory)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as error:
        print(f"idp-mock: configuration error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
