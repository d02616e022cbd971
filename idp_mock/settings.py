"""The IdP's configuration (config/idp.yaml plus the directory it names), validated once at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from idp_mock.authn import Throttle, TotpPolicy
from idp_mock.directory import Directory, load_directory
from sso_common.config import URL_PATTERN, load_yaml
from sso_common.store.registry import parse_store_urls

DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


@dataclass(frozen=True)
class IdPSettings:
    issuer: str  # the IdP's public base URL, also the OIDC issuer
    directory: Directory
    session_lifetime: int
    clock_skew: int
    throttle: Throttle
    totp: TotpPolicy
    consent_lifetime: int  # seconds a person's consent to a third-party application is remembered
    stores: dict[str, str]  # URL per store contract: state
    instance_dir: Path
    demo_hint: bool
    oidc: Any  # idp_mock.oidc_provider.config.OIDCSettings
    saml: Any  # idp_mock.saml_idp.config.SAMLSettings
    faults: Any = None  # idp_mock.faults.FaultSettings
    provisioning: Any = None  # idp_mock.directory_admin.ProvisioningSettings

    @property
    def secure_cookies(self) -> bool:
        return urlsplit(self.issuer).scheme == "https"


def default_instance_dir() -> Path:
    return Path(os.environ.get("IDP_INSTANCE_DIR", Path.cwd() / "instance" / "idp"))


def load_settings(config_path: str | Path | None = None, instance_dir: str | Path | None = None) -> IdPSettings:
    from idp_mock.directory_admin import parse_provisioning
    from idp_mock.faults import parse_fault_settings
    from idp_mock.oidc_provider.config import parse_oidc_settings
    from idp_mock.saml_idp.config import parse_saml_settings

    config_path = Path(config_path or os.environ.get("IDP_CONFIG") or DEFAULT_CONFIG_DIR / "idp.yaml")
    root = load_yaml(config_path).only_keys(
        "issuer",
        "directory",
        "session_lifetime_seconds",
        "clock_skew_seconds",
        "login_throttle",
        "consent_lifetime_seconds",
        "totp",
        "stores",
        "demo_hint",
        "oidc",
        "saml",
        "faults",
        "provisioning",
    )
    issuer = root.child("issuer").string(URL_PATTERN, "an http(s) URL").rstrip("/")
    directory_node = root.child("directory")
    directory = load_directory(config_path.parent / directory_node.string())
    throttle = root.child("login_throttle", {}).only_keys(
        "max_failures_per_user_and_address",
        "window_seconds",
        "max_failures_per_user",
        "user_window_seconds",
        "max_failures_per_address",
        "trusted_seconds",
    )
    totp = root.child("totp", {}).only_keys("look_around_steps")
    instance = Path(instance_dir) if instance_dir else default_instance_dir()
    return IdPSettings(
        issuer=issuer,
        directory=directory,
        session_lifetime=root.child("session_lifetime_seconds", 8 * 3600).integer(60, 7 * 24 * 3600),
        clock_skew=root.child("clock_skew_seconds", 60).integer(0, 600),
        throttle=Throttle(
            max_failures_per_user_and_address=throttle.child("max_failures_per_user_and_address", 5).integer(1, 1000),
            window_seconds=throttle.child("window_seconds", 300).integer(1, 86400),
            max_failures_per_user=throttle.child("max_failures_per_user", 20).integer(1, 100000),
            user_window_seconds=throttle.child("user_window_seconds", 900).integer(1, 7 * 86400),
            max_failures_per_address=throttle.child("max_failures_per_address", 50).integer(1, 100000),
            trusted_seconds=throttle.child("trusted_seconds", 90 * 86400).integer(60, 400 * 86400),
        ),
        consent_lifetime=root.child("consent_lifetime_seconds", 30 * 86400).integer(60, 400 * 86400),
        totp=TotpPolicy(look_around_steps=totp.child("look_around_steps", 1).integer(0, 10)),
        stores=parse_store_urls(
            root.child("stores", {}),
            {
                "state": f"sqlite:///{instance / 'idp-state.db'}",
                "lasting": "",  # lasting: idp_mock/app.py
                "changes": f"sqlite:///{instance / 'directory-changes.db'}",  # run-time directory changes
            },
        ),
        instance_dir=instance,
        demo_hint=root.child("demo_hint", False).boolean(),
        oidc=parse_oidc_settings(root.child("oidc", {}), issuer),
        saml=parse_saml_settings(root.child("saml", {}), issuer, directory),
        faults=parse_fault_settings(root.child("faults", {}), issuer),
        provisioning=parse_provisioning(root.child("provisioning", {}), issuer),
    )
