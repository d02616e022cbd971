"""boto3 sessions acting in the organization's member accounts, as the broker and provisioning need them.

`AccountSessions` assumes `OrganizationAccountAccessRole` in each member account from the
organization's management account, which works unchanged against AWS and the emulator.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import botocore.session
from botocore.credentials import CredentialProvider, CredentialResolver, RefreshableCredentials

if TYPE_CHECKING:
    import boto3

ORGANIZATION_ACCESS_ROLE = "OrganizationAccountAccessRole"


def broker_session(credentials_file: Path) -> boto3.Session:
    """The broker's own AWS session: the keys in `credentials_file` when it exists (the demo launcher and
    the compose provision step leave the emulator's management keys there), otherwise boto3's default
    chain (an instance role, a profile, the environment), as against real AWS."""
    import boto3  # here: importing this module (for its names) costs no boto3

    core = botocore.session.Session()
    if credentials_file.exists():
        core.set_config_variable("credentials_file", str(credentials_file))
    return boto3.Session(botocore_session=core)


class AccountSessions:
    """boto3 sessions acting in member accounts through an organization access role.

    Credentials are refreshed before they expire, so one instance serves a long-running broker. The management
    session may be given as a function, called when first needed: a portal may then start before its keys exist
    (it needs them only for its first call to AWS).
    """

    def __init__(
        self,
        management_session: boto3.Session | Callable[[], boto3.Session],
        region: str,
        endpoint_url: str | None = None,
        role_name: str = ORGANIZATION_ACCESS_ROLE,
        session_name: str = "sso-broker",
    ):
        self.region, self.endpoint_url = region, endpoint_url
        self.role_name, self.session_name = role_name, session_name
        self._management = management_session
        self._sts: Any = None  # the management session's STS client, made when first needed
        self._has_credentials: bool | None = None
        self._sessions: dict[str, boto3.Session] = {}
        self._lock, self._client_lock = threading.Lock(), threading.Lock()
        self._loader = None  # botocore's service models, loaded once for all the accounts' sessions

    def _management_session(self) -> boto3.Session:
        """(called under self._lock)"""
        if callable(self._management):
            self._management = self._management()
        return self._management

    def has_credentials(self) -> bool:
        """Whether the management session finds AWS credentials, looked up once (a lookup that finds none walks
        botocore's whole chain, instance metadata included)."""
        with self._lock:
            if self._has_credentials is None:
                self._has_credentials = self._management_session().get_credentials() is not None
            return self._has_credentials

    def session(self, account_id: str) -> boto3.Session:
        with self._lock:
            if account_id not in self._sessions:
                self._sessions[account_id] = self._assume_into(account_id)
            return self._sessions[account_id]

    def signed_session(self, account_id: str) -> boto3.Session | None:
        """The account's session when the management session has credentials; None when it has none (calls
        that AWS takes unsigned, such as AssumeRoleWithSAML, then go unsigned)."""
        return self.session(account_id) if self.has_credentials() else None

    def client(self, account_id: str, service: str):
        session = self.session(account_id)
        # One client at a time: the first of a service parses its model files into the shared loader, and the
        # accounts provisioned in parallel then find them there instead of each parsing them again (~40 ms each).
        with self._client_lock:
            return session.client(service, region_name=self.region, endpoint_url=self.endpoint_url)

    def _assume_into(self, account_id: str) -> boto3.Session:
        role_arn = f"arn:aws:iam::{account_id}:role/{self.role_name}"

        if self._sts is None:
            self._sts = self._management_session().client(
                "sts", region_name=self.region, endpoint_url=self.endpoint_url
            )
        sts = self._sts

        def fetch() -> dict:
            credentials = sts.assume_role(RoleArn=role_arn, RoleSessionName=self.session_name)["Credentials"]
            return {
                "access_key": credentials["AccessKeyId"],
                "secret_key": credentials["SecretAccessKey"],
                "token": credentials["SessionToken"],
                "expiry_time": credentials["Expiration"].isoformat(),
            }

        core = botocore.session.Session()
        if self._loader is None:  # (called under self._lock)
            self._loader = core.get_component("data_loader")
        else:  # a client per service and account: each new session would parse the same model files again
            core.register_component("data_loader", self._loader)
        core.register_component("credential_provider", CredentialResolver([_RefreshingProvider(fetch)]))
        import boto3

        return boto3.Session(botocore_session=core, region_name=self.region)


class _RefreshingProvider(CredentialProvider):
    METHOD = "assume-role-into-account"

    def __init__(self, fetch: Callable[[], dict]):
        super().__init__()
        self._fetch = fetch

    def load(self) -> RefreshableCredentials:
        return RefreshableCredentials.create_from_metadata(self._fetch(), self._fetch, self.METHOD)
