"""boto3 sessions acting in the organization's member accounts, as the broker and provisioning need them.

`AccountSessions` assumes `OrganizationAccountAccessRole` in each member account from the
organization's management account, which works unchanged against AWS and the emulator.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

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

    Credentials are refreshed before they expire, so one instance serves a long-running broker.
    """

    def __init__(
        self,
        management_session: boto3.Session,
        region: str,
        endpoint_url: str | None = None,
        role_name: str = ORGANIZATION_ACCESS_ROLE,
        session_name: str = "sso-broker",
    ):
        self.region, self.endpoint_url = region, endpoint_url
        self.role_name, self.session_name = role_name, session_name
        self._sts = management_session.client("sts", region_name=region, endpoint_url=endpoint_url)
        self._sessions: dict[str, boto3.Session] = {}
        self._lock = threading.Lock()
        self._loader = None  # botocore's service models, loaded once for all the accounts' sessions

    def session(self, account_id: str) -> boto3.Session:
        with self._lock:
            if account_id not in self._sessions:
                self._sessions[account_id] = self._assume_into(account_id)
            return self._sessions[account_id]

    def client(self, account_id: str, service: str):
        return self.session(account_id).client(service, region_name=self.region, endpoint_url=self.endpoint_url)

    def _assume_into(self, account_id: str) -> boto3.Session:
        role_arn = f"arn:aws:iam::{account_id}:role/{self.role_name}"

        def fetch() -> dict:
            credentials = self._sts.assume_role(RoleArn=role_arn, RoleSessionName=self.session_name)["Credentials"]
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
