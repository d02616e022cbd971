"""One StateStore over two engines: the kinds that must outlive a restart of the state engine go to a
second, durable store; everything else stays on the first.

A service names a `lasting` URL beside its `state` URL (`stores:` in its config file; by default the same
URL, and then nothing is routed). Which kinds are lasting is the service's decision, declared next to
the code that owns them (broker/app.py, idp_mock/app.py) and explained in docs/architecture.md
("Stores: which engine keeps what"): records that people or other systems hold on to for days (an sso-oidc
client registration, an OIDC client or a SAML SP registered at run time, a consent), whose loss would
break a client until someone repairs it by hand, rather than only ask a person to sign in again.
"""

from __future__ import annotations

from sso_common.store import StateStore


class RoutedStateStore:
    """StateStore that keeps `lasting_kinds` in `lasting` and every other kind in `default`."""

    def __init__(self, default: StateStore, lasting: StateStore, lasting_kinds: frozenset[str]) -> None:
        self.default, self.lasting, self.lasting_kinds = default, lasting, frozenset(lasting_kinds)

    def store_for(self, kind: str) -> StateStore:
        return self.lasting if kind in self.lasting_kinds else self.default

    def put(self, kind: str, key: str, value: dict, ttl: float) -> None:
        self.store_for(kind).put(kind, key, value, ttl)

    def add(self, kind: str, key: str, value: dict, ttl: float) -> bool:
        return self.store_for(kind).add(kind, key, value, ttl)

    def get(self, kind: str, key: str) -> dict | None:
        return self.store_for(kind).get(kind, key)

    def take(self, kind: str, key: str) -> dict | None:
        return self.store_for(kind).take(kind, key)

    def delete(self, kind: str, key: str) -> None:
        self.store_for(kind).delete(kind, key)

    def incr(self, kind: str, key: str, ttl: float, amount: int = 1) -> int:
        return self.store_for(kind).incr(kind, key, ttl, amount)

    def purge_expired(self) -> int:
        return self.default.purge_expired() + self.lasting.purge_expired()

    def stores(self) -> dict[str, StateStore]:
        """The engines behind it, by role (readiness checks each)."""
        return {"state": self.default, "lasting": self.lasting}
