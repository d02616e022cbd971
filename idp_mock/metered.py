"""The IdP's sign-in outcomes in the metrics: `sso_logins_total{service="idp",outcome}` for every password
and verification-code check (ok, needs_totp, bad_credentials, disabled, throttled), and the refusals among
them in `sso_refusals_total{service="idp",reason}`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from idp_mock.authn import Authenticator, Outcome, Result
from sso_common.metrics import metrics

REFUSED = {Outcome.BAD_CREDENTIALS, Outcome.DISABLED, Outcome.THROTTLED}


def count_outcomes(authenticator: Authenticator) -> Authenticator:
    """`authenticator`, its checks counted (what they decide is unchanged)."""

    def counted(check: Callable[..., Result]) -> Callable[..., Result]:
        @functools.wraps(check)
        def run(*args: Any, **kwargs: Any) -> Result:
            result = check(*args, **kwargs)
            counters = metrics()
            counters.logins.labels("idp", result.outcome.value).inc()
            if result.outcome in REFUSED:
                counters.refusals.labels("idp", result.outcome.value).inc()
            return result

        return run

    for name in ("check_password", "check_totp"):
        setattr(authenticator, name, counted(getattr(authenticator, name)))
    return authenticator
