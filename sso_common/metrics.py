"""Prometheus metrics of both apps: logins, credential issuances, refusals, latencies; `/metrics` in the
Prometheus text format (sso_common/operations.py serves it; the edge does not expose it).

Why prometheus_client and not a text exposition of our own: each replica runs WEB_WORKERS processes, and a
scrape reaches one of them. Counters kept per process would go up and down between scrapes; they must be
summed over the workers. prometheus_client's multiprocess mode does exactly that (each process writes its
values to a memory-mapped file in PROMETHEUS_MULTIPROC_DIR; a scrape sums the files), with histograms,
label escaping and the exposition format done right. `sso_common.serve` gives each server a private
folder for those files before the app is built and the workers fork (`enable_multiprocess`); without one
(tests, the Flask test client), the values are the process's own.

The metrics (label values are bounded sets: no user, path or address):
- `sso_http_request_duration_seconds{service,endpoint,method,status}`: a histogram per Flask endpoint.
- `sso_http_request_cpu_seconds_total{service,endpoint,method}`: CPU time of the thread that served the request,
  from the app's first hook to its answer (waits on the network or a lock excluded): where a server's CPU goes,
  per endpoint (`./run bench` prints it per operation).
- `sso_logins_total{service,outcome}`: the portal's sign-ins (web and command line: success, failure), the
  IdP's password and code checks (ok, needs_totp, bad_credentials, disabled, throttled).
- `sso_credential_issuances_total{channel,outcome}`: the portal's issuances (success, failure), from its
  audit records, so that the count is exactly what the audit trail holds.
- `sso_refusals_total{service,reason}`: sign-ins and issuances refused, throttled attempts, and answers
  refused because a store was unavailable (`store_unavailable`).
- `sso_sts_call_seconds{outcome}`: the AssumeRoleWithSAML call.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def enable_multiprocess(directory: Path) -> None:
    """Sum the metrics of every process forked from this one, through files in `directory` (empty, private).
    Call before the app is built: metric objects made afterwards keep their values in those files."""
    os.environ[MULTIPROC_ENV] = str(directory)
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # chosen at import time: choose again now


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=True)  # ours, not the global one (tests build many apps)
        self.requests = Histogram(
            "sso_http_request_duration_seconds",
            "Time from the request's arrival at the app to its answer, by Flask endpoint.",
            ["service", "endpoint", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.request_cpu = Counter(
            "sso_http_request_cpu_seconds", "CPU time of the request's thread in the app, by Flask endpoint.",
            ["service", "endpoint", "method"], registry=self.registry,
        )  # fmt: skip
        self.logins = Counter(
            "sso_logins", "Sign-ins by outcome (portal: web and command line; IdP: password and code checks).",
            ["service", "outcome"], registry=self.registry,
        )  # fmt: skip
        self.issuances = Counter(
            "sso_credential_issuances", "Credential issuances by channel and outcome (as audited).",
            ["channel", "outcome"], registry=self.registry,
        )  # fmt: skip
        self.refusals = Counter(
            "sso_refusals", "Requests refused, by reason.", ["service", "reason"], registry=self.registry
        )
        self.sts = Histogram(
            "sso_sts_call_seconds", "AssumeRoleWithSAML calls, by outcome.", ["outcome"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip

    def exposition(self) -> tuple[bytes, str]:
        """The text format: summed over the worker processes when serving with several."""
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess
        from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4  # what every Prometheus reads

        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4


_metrics: Metrics | None = None
_lock = threading.Lock()


def metrics() -> Metrics:
    """The process's metrics, made on first use (after `enable_multiprocess`, when serving)."""
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = Metrics()
    return _metrics


class CountingAuditLog:
    """An AuditLog that counts what it records: the portal's sign-ins, issuances and refusals are what its
    audit trail says they are (a record that cannot be written is not counted)."""

    def __init__(self, audit: Any, service: str = "portal") -> None:
        self._audit, self._service = audit, service

    def append(self, event: dict) -> None:
        self._audit.append(event)
        kind, outcome = event.get("type"), str(event.get("outcome", ""))
        counters = metrics()
        if kind in ("sign_in", "cli_sign_in"):
            counters.logins.labels(self._service, outcome).inc()
            if outcome != "success":
                counters.refusals.labels(self._service, kind).inc()
        elif kind == "credentials":
            channel = str(event.get("channel", ""))
            counters.issuances.labels(channel, outcome).inc()
            if outcome != "success":
                counters.refusals.labels(self._service, "credentials").inc()

    def query(self, *args: Any, **kwargs: Any) -> list[dict]:
        return list(self._audit.query(*args, **kwargs))

    def export(self) -> Iterator[dict]:
        return iter(self._audit.export())

    def __getattr__(self, name: str) -> Any:  # ping, and whatever else the backend offers
        return getattr(self._audit, name)
