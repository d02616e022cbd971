"""`broker`: run the access portal, provision the AWS accounts, check the config."""

from __future__ import annotations

import argparse
import sys

from sso_common.config import ConfigError
from sso_common.serve import add_serve_command, serve_at
from sso_common.store.errors import StoreUnavailable


def _serve(args) -> int:
    from broker.app import create_app
    from broker.settings import load_settings

    settings = load_settings(args.config)
    # The sso API's bearer token arrives in `x-amz-sso_bearer_token` (see broker/http/sso_portal.py): granian
    # passes header names with underscores on, as HTTP_X_AMZ_SSO_BEARER_TOKEN (docs/architecture.md, Serving).
    serve_at(lambda: create_app(settings), settings.portal_url, args)
    return 0


def _check_config(args) -> int:
    """Validate everything, then print what each upstream may vouch for and how its claims are mapped."""
    import tempfile
    from pathlib import Path

    from broker.connectors.registry import build_connectors
    from broker.connectors.trust import GroupCatalogue
    from broker.settings import load_settings
    from sso_common.store.memory import MemoryStateStore

    settings = load_settings(args.config)
    with tempfile.TemporaryDirectory() as scratch:  # the upstreams too, without touching the instance folder
        connectors = build_connectors(
            settings.upstreams_node,
            portal_url=settings.portal_url,
            instance_dir=Path(scratch),
            store=MemoryStateStore(),
            clock_skew=settings.clock_skew,
        )
    trusts = {trust.upstream: trust for trust in settings.upstream_trusts}
    for upstream_id, connector in connectors.items():
        print(f"upstream {upstream_id} ({connector.protocol}): {connector.display_name}")
        for line in (*connector.describe(), *trusts[upstream_id].describe()):
            print(f"  {line}")
    access = settings.access
    print(f"assignable groups: {GroupCatalogue(settings.upstream_trusts)}")
    print(
        f"OK: {len(access.accounts)} accounts, {len(access.permission_sets)} permission sets, "
        f"{len(access.assignments)} assignments"
    )
    return 0


def _people(args) -> int:
    """List the people seen at sign-in, or release one (upstream, subject) so its address can be used again."""
    from broker.settings import load_settings
    from sso_common.store import PeopleQuery
    from sso_common.store.registry import open_directory_store

    settings = load_settings(args.config)
    directory = open_directory_store(settings.stores["directory"])
    if args.action == "forget":
        if not directory.delete(args.upstream, args.subject):
            print(f"broker: nobody with subject {args.subject!r} at upstream {args.upstream!r}", file=sys.stderr)
            return 1
        print(f"forgot subject {args.subject!r} of upstream {args.upstream!r}")
        return 0
    query = PeopleQuery(upstream=args.upstream, email=args.email.lower() if args.email else None)
    for person in directory.find(query, limit=1000):
        state = " (disabled)" if person.disabled else ""
        print(f"{person.upstream}\t{person.subject}\t{person.email}\t{','.join(sorted(person.groups))}{state}")
    return 0


def _provision(args) -> int:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    from broker.aws.accounts import AccountSessions, broker_session
    from broker.aws.assertion import idp_metadata_xml
    from broker.aws.provisioning import provision
    from broker.settings import load_settings
    from sso_common.keys import load_or_create_signing_identity

    settings = load_settings(args.config)
    signing = load_or_create_signing_identity(settings.instance_dir / "keys", "aws-idp-signing", settings.idp_entity_id)
    metadata = idp_metadata_xml(settings.idp_entity_id, signing, f"{settings.portal_url}/")
    accounts = AccountSessions(
        broker_session(settings.aws_credentials_file), settings.access.region, settings.aws_endpoint_url
    )
    where = settings.aws_endpoint_url or "AWS"
    try:
        changes = provision(settings.access, metadata, accounts.client)
    except NoCredentialsError:
        print(
            f"broker: no AWS credentials to provision {where} with: none in {settings.aws_credentials_file} "
            "(the demo writes the emulator's keys there) nor in the environment or ~/.aws",
            file=sys.stderr,
        )
        return 1
    except (BotoCoreError, ClientError) as error:
        print(f"broker: provisioning {where} failed: {error}", file=sys.stderr)
        return 1
    for change in changes:
        print(change)
    print(f"{len(changes)} change(s).")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="broker", description=__doc__)
    parser.add_argument("--config", help="path to broker.yaml (default: config/broker.yaml or $BROKER_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)
    add_serve_command(commands, _serve, "portal")
    commands.add_parser(
        "check-config", help="validate the config, print each upstream's claim mapping and trust boundary, and exit"
    ).set_defaults(run=_check_config)
    people = commands.add_parser("people", help="the people seen at sign-in (upstream, subject, email)")
    actions = people.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="list them (tab-separated: upstream, subject, email, groups)")
    listing.add_argument("--upstream", help="only this upstream's")
    listing.add_argument("--email", help="only the holders of this address")
    listing.set_defaults(run=_people)
    forget = actions.add_parser(
        "forget", help="release an (upstream, subject), e.g. after its address moved to a new subject"
    )
    forget.add_argument("upstream")
    forget.add_argument("subject")
    forget.set_defaults(run=_people)
    commands.add_parser(
        "provision", help="create or update the SAML provider, roles and demo data in every account (idempotent)"
    ).set_defaults(run=_provision)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as error:
        print(f"broker: configuration error: {error}", file=sys.stderr)
        return 2
    except StoreUnavailable as error:  # its message names the store and the driver's words, never a password
        print(f"broker: {' '.join(str(error).split())}; try again when it is back", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
