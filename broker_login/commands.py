"""`broker-login`: sign in to the SSO login broker from a terminal and get short-lived AWS credentials.

  broker-login [--account-id ID | --account-name NAME] [--role ROLE] [--format FORMAT [NAME]]
      sign in (device flow) and print credentials: exports (default), json, credential-process,
      or `profile NAME` to write them to ~/.aws/credentials
  broker-login --explain [--account-id ID | --account-name NAME] [--role ROLE]
      print "How did I get here?" on stderr: every step of the sign-in, decoded and checked, and each
      credential request (alone: the sign-in only, no credentials)
  broker-login configure [--use-credential-process] [--profile-prefix PREFIX]
      write ~/.aws/config profiles for every role you have, as `aws configure sso` does
  broker-login credential-process --account-id ID --role ROLE
      for `credential_process =` in ~/.aws/config: cached credentials, renewed when under 15 minutes
  broker-login logout
      revoke the token at the portal and forget the cached token and credentials

The portal is the first of: --portal-url, $BROKER_URL, $AWS_ENDPOINT_URL_SSO_OIDC,
$AWS_ENDPOINT_URL_SSO (the variables that point unmodified AWS tools at the portal), the sso_start_url
of the sso-session in ~/.aws/config. A start URL as IAM Identity Center writes it (.../start/#) works.
With --non-interactive, the sign-in needs nobody at a browser: it uses BROKER_LOGIN_USERNAME,
BROKER_LOGIN_PASSWORD and BROKER_LOGIN_TOTP_SECRET or BROKER_LOGIN_TOTP (or standard input); a person
at the terminal is still asked to choose the account and role when no option names them.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import webbrowser
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import NoReturn, TypeVar

from broker_login import explain, files, formats, validate
from broker_login.headless import LoginSecrets, headless_sign_in
from broker_login.portal import Credentials, LoginError, NotSignedIn, Portal, PortalInfo, Token
from broker_login.terminal import Console

T = TypeVar("T")

DEFAULT_SESSION = "broker"
DEFAULT_REGION = "us-east-1"
DEFAULT_IDP = "example-corp-oidc"
FORMATS = ("exports", "json", "credential-process", "profile")
# Where the portal's address is read from, in this order (after --portal-url).
PORTAL_VARIABLES = ("BROKER_URL", "AWS_ENDPOINT_URL_SSO_OIDC", "AWS_ENDPOINT_URL_SSO")
# Names the person gives that become INI section names (profiles, sso-session) or parts of them.
NAME = re.compile(r"[A-Za-z0-9_.+@-]{1,64}", re.ASCII)


def _now() -> datetime:
    return datetime.now(UTC)


def _graphical_session() -> bool:
    """Whether opening a browser can work. Without a display, `webbrowser` would start a text-mode
    browser (lynx, w3m) in this very terminal, and the sign-in would wait behind it."""
    return (
        sys.platform in ("darwin", "win32")
        or bool(os.environ.get("BROWSER"))
        or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    )


class SignIn:
    """A usable access token for one portal and sso-session: cached, refreshed, or from a new sign-in."""

    def __init__(
        self,
        portal: Portal,
        session_name: str,
        console: Console,
        *,
        non_interactive: bool,
        idp: str,
        open_browser: bool,
    ):
        self.portal, self.session_name, self.console = portal, session_name, console
        self.non_interactive, self.idp, self.open_browser = non_interactive, idp, open_browser

    def token(self) -> Token:
        with files.token_lock(self.session_name):
            return self._token()

    def _token(self) -> Token:
        cached = files.load_token(self.session_name, self.portal.url)
        if cached:
            token, registration = cached
            if files.fresh(token.expires_at, _now()):
                return token
            if token.refresh_token and registration and registration.expires_at > _now():
                try:
                    return self._keep(self.portal.refresh(registration, token.refresh_token), registration)
                except LoginError as refused:  # revoked or past the end of the sign-in: sign in again
                    return self._sign_in_again(refused)
        return self.sign_in()

    def _sign_in_again(self, ended: LoginError) -> Token:
        """A new sign-in after the portal ended the last one; when there is no way to sign in here, the error
        says why the portal ended it (disabled, revoked, signed out at the IdP...), in its own words."""
        if self.non_interactive or self.console.reaches_the_person:
            self.console.say(f"The portal ended your last sign-in ({ended}).")
        try:
            return self.sign_in()
        except LoginError as failure:
            raise LoginError(f"the portal ended your sign-in ({ended}); {failure}") from None

    def sign_in(self) -> Token:
        if not self.non_interactive and not self.console.reaches_the_person:
            raise LoginError(
                f"not signed in to {self.portal.url} and no terminal to sign in on: run "
                f"`broker-login --session-name {self.session_name}` first"
            )
        registration = self._registration()
        if self.non_interactive:
            secrets = LoginSecrets.from_environment()
            self.console.say(f"Signing in to {self.portal.url} as {secrets.username} through {self.idp}.")
            token = headless_sign_in(self.portal, registration, self.idp, secrets)
        else:
            authorization = self.portal.start_device_authorization(registration)
            self._show(authorization)
            token = self.portal.wait_for_token(
                registration, authorization, on_wait=lambda: self.console.say(".", end="")
            )
            self.console.say(" signed in.")
        files.forget_credentials(self.portal.url, self.session_name)  # cached under the last sign-in
        return self._keep(token, registration)

    def _show(self, authorization: dict) -> None:
        self.console.say(
            f"To sign in, open {authorization['verificationUri']}\n"
            f"and enter the code {authorization['userCode']}\n"
            f"(or open {authorization['verificationUriComplete']})"
        )
        if self.open_browser and _graphical_session() and webbrowser.open(authorization["verificationUriComplete"]):
            self.console.say("A browser window was opened for you.")
        self.console.say("Waiting for approval", end="")

    def _registration(self):
        path = files.registration_path(self.portal.url, self.portal.region)
        registration = files.load_registration(path)
        if registration is None or not files.fresh(registration.expires_at, _now(), timedelta(days=1)):
            registration = self.portal.register()
            files.save_registration(path, registration)
        return registration

    def _keep(self, token: Token, registration) -> Token:
        files.save_token(self.session_name, self.portal.url, self.portal.region, token, registration)
        return token

    def call(self, action: Callable[[Token], T]) -> T:
        """`action` with a token; once more after a new sign-in if the portal no longer knows the token."""
        try:
            return action(self.token())
        except NotSignedIn as ended:
            files.forget_token(self.session_name)
            return action(self._sign_in_again(ended))


# --- commands -----------------------------------------------------------------------------------


def _no_access(sign_in: SignIn) -> LoginError:
    """The portal's explanation of "no AWS access", naming who is signed in and their groups."""
    url = sign_in.portal.url
    try:
        person = sign_in.call(sign_in.portal.whoami)
    except LoginError:
        return LoginError(f"you have no AWS access through {url}: ask your manager for access")
    return LoginError(
        f"{person.email or person.username} has no AWS access through {url}: your groups "
        f"({', '.join(person.groups) or 'none'}) are not assigned to any AWS account. Access is granted to "
        "groups, not to people: ask your manager to request membership in a group that has the access you need"
    )


def _pick_role(sign_in: SignIn, args, console: Console) -> tuple[str, str, str]:
    """(account ID, account name, role) from the options, asking on the terminal where they leave a choice."""
    portal = sign_in.portal
    account_id, account_name = args.account_id, args.account_name
    if account_id and args.role:
        return account_id, account_id, args.role
    accounts = sign_in.call(portal.accounts)
    if not accounts:
        raise _no_access(sign_in)
    if account_id or account_name:
        accounts = [a for a in accounts if account_id in (None, a[0]) and account_name in (None, a[1])]
        if not accounts:
            raise LoginError(f"you have no role in account {account_id or account_name}")
    account_id, account_name = console.choose(
        "account", accounts, lambda a: f"{a[1]} ({a[0]})", option="--account-name or --account-id"
    )
    roles = sign_in.call(lambda token: portal.roles(token, account_id))
    if args.role:
        if args.role not in roles:
            raise LoginError(f"you have no role {args.role} in {account_name} (yours: {', '.join(roles)})")
        return account_id, account_name, args.role
    return account_id, account_name, console.choose("role", roles, option="--role")


def _explain(sign_in: SignIn, console: Console) -> None:
    """The portal's "How did I get here?" for this sign-in, on the console (stderr): never the outcome's
    cause, so a failure to fetch it is said and nothing more."""
    try:
        document = sign_in.call(lambda token: explain.fetch(sign_in.portal, token))
    except LoginError as error:
        console.say(f"broker-login: no explanation: {error}")
        return
    console.say(explain.render(document))


def _print_credentials(sign_in: SignIn, args, console: Console) -> int:
    """Credentials (stdout), and with --explain the explanation (stderr), also of a refusal."""
    if not getattr(args, "explain", False):
        return _write_credentials(sign_in, args, console)
    if not (args.account_id or args.account_name or args.role):
        _explain(sign_in, console)
        return 0
    try:
        written = _write_credentials(sign_in, args, console)
    except LoginError:
        _explain(sign_in, console)
        raise
    _explain(sign_in, console)
    return written


def _write_credentials(sign_in: SignIn, args, console: Console) -> int:
    account_id, account_name, role = _pick_role(sign_in, args, console)
    credentials = sign_in.call(lambda token: sign_in.portal.credentials(token, account_id, role))
    kind = args.format[0]
    if kind == "credential-process":  # botocore's format has no place for an endpoint
        sys.stdout.write(formats.credential_process(credentials))
        return 0
    info = sign_in.portal.describe()
    if kind == "profile":
        _write_credentials_profile(sign_in, args.format[1], credentials, info)
        console.say(
            f"Credentials for {role} in {account_name} are in profile {args.format[1]} "
            f"until {credentials.expiration:%H:%M} UTC."
        )
    elif kind == "json":
        sys.stdout.write(formats.as_json(credentials, account_id, role, info.aws_endpoint_url))
    else:
        sys.stdout.write(formats.exports(credentials, info))
    return 0


def _emulator_services(sign_in: SignIn, info: PortalInfo) -> tuple[str | None, dict[str, list[str]]]:
    """(name, section) of the services section that sends AWS calls to the emulator (and SSO calls to
    the portal, as `configure` writes it too); (None, {}) against real AWS."""
    if not info.aws_endpoint_url:
        return None, {}
    name = formats.services_section_name(sign_in.session_name)
    return name, {f"services {name}": formats.services_section(sign_in.portal.url, info)}


def _write_credentials_profile(sign_in: SignIn, profile: str, credentials: Credentials, info: PortalInfo) -> None:
    """`[profile]` in ~/.aws/credentials; its services section goes to ~/.aws/config first, so the
    profile never names a section that is not there."""
    name, services = _emulator_services(sign_in, info)
    if services:
        files.update_ini(files.config_file(), services)
    region = info.region if services else None
    files.update_ini(files.credentials_file(), {profile: formats.credentials_section(credentials, name, region)})


def _credential_process(sign_in: SignIn, args, console: Console) -> int:
    path = files.credentials_path(sign_in.portal.url, sign_in.session_name, args.account_id, args.role)
    credentials: Credentials | None = files.load_credentials(path)
    if credentials is None or not files.fresh(credentials.expiration, _now()):
        credentials = sign_in.call(lambda token: sign_in.portal.credentials(token, args.account_id, args.role))
        files.save_credentials(path, credentials)
    sys.stdout.write(formats.credential_process(credentials))
    return 0


def _roles_of(portal: Portal, account_id: str, token: Token) -> list[str]:
    return portal.roles(token, account_id)


def _credential_process_command(sign_in: SignIn, account_id: str, role: str) -> list[str]:
    """The `credential_process` command line for one role: this Python, this portal and session."""
    portal = sign_in.portal
    return [
        sys.executable,
        "-m",
        "broker_login",
        "credential-process",
        "--portal-url",
        portal.url,
        "--session-name",
        sign_in.session_name,
        "--region",
        portal.region,
        "--account-id",
        account_id,
        "--role",
        role,
    ]


def _credential_process_sections(
    sign_in: SignIn, assignments: list[tuple[str, str, str]], prefix: str, info: PortalInfo
) -> dict[str, list[str]]:
    """A profile per role that runs `broker-login credential-process`, and the emulator's services section."""
    name, sections = _emulator_services(sign_in, info)
    for account_id, account_name, role in assignments:
        command = _credential_process_command(sign_in, account_id, role)
        profile = f"profile {formats.profile_name(account_name, role, prefix)}"
        sections[profile] = formats.credential_process_profile(command, info.region, name)
    return sections


def _configure(sign_in: SignIn, args, console: Console) -> int:
    """Every profile is built from checked answers before the first byte is written: a refused answer
    (say an account name carrying a newline and a section of its own) leaves ~/.aws/config untouched."""
    portal = sign_in.portal
    accounts = sign_in.call(portal.accounts)
    if not accounts:
        raise _no_access(sign_in)
    assignments = [
        (account_id, name, role)
        for account_id, name in accounts
        for role in sign_in.call(functools.partial(_roles_of, portal, account_id))
    ]
    info = portal.describe()
    if args.use_credential_process:
        sections = _credential_process_sections(sign_in, assignments, args.profile_prefix, info)
    else:
        sections = formats.sso_config_sections(
            sign_in.session_name, portal.url, portal.region, assignments, args.profile_prefix, info
        )
    files.update_ini(files.config_file(), sections)
    profiles = [name.removeprefix("profile ") for name in sections if name.startswith("profile ")]
    console.say(f"Wrote {files.config_file()}: " + ", ".join(profiles))
    return 0


def _logout(sign_in: SignIn, args, console: Console) -> int:
    cached = files.load_token(sign_in.session_name, sign_in.portal.url)
    if cached:
        try:
            sign_in.portal.logout(cached[0])
        except NotSignedIn:
            pass  # already ended at the portal
    files.forget_token(sign_in.session_name)
    files.forget_credentials(sign_in.portal.url, sign_in.session_name)
    console.say("Signed out.")
    return 0


# --- command line -------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Usage mistakes in one line, with where to read more, instead of argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


NAME_RULE = "may have only A-Z a-z 0-9 _ . + @ -"


def _allowed(pattern: re.Pattern[str], what: str, rule: str, allow_empty: bool = False) -> Callable[[str], str]:
    """An argparse type: the value if `pattern` accepts it whole (names end up in INI section names,
    IDs and regions in files and commands), else a usage error that shows it escaped."""

    def check(value: str) -> str:
        if (allow_empty and value == "") or pattern.fullmatch(value):
            return value
        raise argparse.ArgumentTypeError(f"{what} {validate.shown(value)} {rule}")

    return check


def _portal_options() -> _Parser:
    """Options of every command: which portal, which sso-session. SUPPRESS keeps a subcommand's
    defaults from hiding values given before the subcommand's name."""
    common = _Parser(add_help=False)
    hide = argparse.SUPPRESS
    common.add_argument(
        "--portal-url",
        default=hide,
        help="the access portal, or its start URL (default: $BROKER_URL, $AWS_ENDPOINT_URL_SSO_OIDC, "
        "$AWS_ENDPOINT_URL_SSO, then the sso_start_url of the sso-session in ~/.aws/config)",
    )
    common.add_argument(
        "--region",
        default=hide,
        type=_allowed(validate.REGION, "--region", "is not an AWS region's name, e.g. us-east-1"),
        help=f"sso_region (default {DEFAULT_REGION})",
    )
    common.add_argument(
        "--session-name",
        default=hide,
        type=_allowed(NAME, "--session-name", NAME_RULE),
        help=f"sso-session name (default {DEFAULT_SESSION})",
    )
    return common


def _sign_in_options() -> _Parser:
    """Options of the commands that may have to sign in."""
    common = _Parser(add_help=False)
    hide = argparse.SUPPRESS
    common.add_argument(
        "--idp",
        default=hide,
        metavar="ID",
        help=f"with --non-interactive: the identity provider to sign in through, one the portal's sign-in "
        f"page offers (the demo's: {DEFAULT_IDP} (default), example-corp-saml)",
    )
    common.add_argument("--no-browser", action="store_true", default=hide, help="do not open a browser")
    common.add_argument(
        "--non-interactive",
        action="store_true",
        default=hide,
        help="sign in without a browser, with secrets from the environment or standard input",
    )
    return common


def _role_options(parser: argparse.ArgumentParser, required: bool) -> None:
    account = parser.add_mutually_exclusive_group(required=required)
    account.add_argument(
        "--account-id",
        type=_allowed(validate.ACCOUNT_ID, "--account-id", "is not a 12-digit AWS account ID"),
        help="the 12-digit AWS account ID",
    )
    if not required:
        account.add_argument("--account-name", help="the account's name, e.g. example-production")
    parser.add_argument(
        "--role",
        required=required,
        type=_allowed(validate.ROLE_NAME, "--role", "is not a role name (A-Z a-z 0-9 _+=,.@-)"),
        help="the permission set's name, e.g. EmployeeDirectoryReadOnly",
    )


def _parser() -> argparse.ArgumentParser:
    portal, sign_in = _portal_options(), _sign_in_options()
    parser = _Parser(
        prog="broker-login",
        parents=[portal, sign_in],
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _role_options(parser, required=False)
    parser.add_argument(
        "--format",
        nargs="+",
        default=["exports"],
        metavar="FORMAT",
        help="exports (default), json, credential-process, or profile NAME",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help='print "How did I get here?" on stderr: the sign-in step by step, and this credential request',
    )
    parser.set_defaults(run=_print_credentials, account_name=None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    configure = commands.add_parser(
        "configure",
        parents=[portal, sign_in],
        help="write ~/.aws/config profiles",
        description="Write ~/.aws/config: an sso-session and one profile per role you have.",
    )
    configure.add_argument(
        "--use-credential-process",
        action="store_true",
        help="profiles that call `broker-login credential-process` instead of sso_session ones",
    )
    configure.add_argument(
        "--profile-prefix",
        default="",
        type=_allowed(NAME, "--profile-prefix", NAME_RULE, allow_empty=True),
        help="prefix for the profile names",
    )
    configure.set_defaults(run=_configure)
    process = commands.add_parser(
        "credential-process",
        parents=[portal, sign_in],
        help="for credential_process =",
        description="Print one role's credentials as a credential_process: cached, renewed when under 15 minutes.",
    )
    _role_options(process, required=True)
    process.set_defaults(run=_credential_process)
    logout = commands.add_parser(
        "logout",
        parents=[portal],
        help="sign out",
        description="Revoke the token at the portal and forget the cached token and credentials.",
    )
    logout.set_defaults(run=_logout)
    return parser


def _check_format(parser: argparse.ArgumentParser, args) -> None:
    if args.run is not _print_credentials:
        return
    kind, extra = args.format[0], args.format[1:]
    if kind not in FORMATS or (kind == "profile") != (len(extra) == 1) or len(extra) > 1:
        parser.error("--format takes exports, json, credential-process, or profile NAME")
    if extra and not NAME.fullmatch(extra[0]):
        parser.error(f"profile name {validate.shown(extra[0])} {NAME_RULE}")


def portal_url(given: str | None, environ: Mapping[str, str], session_name: str) -> tuple[str, str] | None:
    """(the portal's address, where it came from), in the documented order, or None."""
    if given:
        return given, "--portal-url"
    for variable in PORTAL_VARIABLES:
        if environ.get(variable):
            return environ[variable], f"${variable}"
    start_url = files.sso_session_start_url(session_name)
    if start_url:
        return start_url, f"sso_start_url of [sso-session {session_name}] in {files.config_file()}"
    return None


def _fail(message: str, code: int = 1) -> int:
    print(f"broker-login: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check_format(parser, args)

    def option(name: str, default=None):
        return getattr(args, name, default)

    session_name = option("session_name", DEFAULT_SESSION)
    found = portal_url(option("portal_url"), os.environ, session_name)
    if found is None:
        return _fail(
            "no portal: give --portal-url, set BROKER_URL or AWS_ENDPOINT_URL_SSO_OIDC "
            "(see the README), or run `broker-login configure` once with one of them",
            2,
        )
    try:
        portal = Portal(found[0], option("region", DEFAULT_REGION))
    except LoginError as error:
        return _fail(f"the portal URL from {found[1]}: {error}", 2)
    console = Console(messages_on_tty=args.run is _credential_process)
    sign_in = SignIn(
        portal,
        session_name,
        console,
        non_interactive=option("non_interactive", False),
        idp=option("idp", DEFAULT_IDP),
        open_browser=not option("no_browser", False),
    )
    try:
        return args.run(sign_in, args, console)
    except LoginError as error:
        return _fail(str(error))
    except OSError as error:  # ~/.aws not writable, a full disk...
        return _fail(f"{error.strerror or error}: {error.filename or ''}".rstrip(": "))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
