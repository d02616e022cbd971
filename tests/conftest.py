"""Fixtures shared by every test folder: real services on free ports, torn down after use."""

from __future__ import annotations

import pytest

from tests.support.servers import start_idp


@pytest.fixture(scope="session")
def idp(tmp_path_factory):
    """The mock IdP, started for real from the repository's config."""
    service = start_idp(tmp_path_factory.mktemp("idp"))
    yield service
    service.stop()
