"""AWS's wire format of errors (broker/http/aws_wire.py)."""

from __future__ import annotations

import pytest

from broker.errors import IdentityCenterError, InvalidGrant, NotSignedIn, SlowDown
from broker.http.aws_wire import ERRORS, ApiError


def test_unknown_error_names_are_a_programming_error():
    with pytest.raises(ValueError):
        ApiError("NoSuchException", "x")
    assert ApiError("SlowDownException", "x").status == 400


@pytest.mark.parametrize("error", [InvalidGrant, NotSignedIn, SlowDown])
def test_every_domain_refusal_has_a_wire_name(error: type[IdentityCenterError]):
    assert error.aws_error in ERRORS
