"""What operators of both apps get: readiness, metrics, and a clear 503 when a store is unavailable.

- `/healthz` (sso_common/web.py) stays liveness: the process answers. It never looks at a store, so an
  orchestrator does not restart every replica because Redis restarts.
- `/readyz` is readiness: 200 when every store the app was opened with answers now (Redis PING, a
  PostgreSQL `SELECT 1`), 503 naming the store that does not. Embedded stores (SQLite, memory) are ready.
- `/metrics`: Prometheus text format (sso_common/metrics.py). Neither endpoint is passed on by the edge
  (devstack/edge.py answers 404 there): scrape the replicas on the internal network.
- `StoreUnavailable` anywhere in a request becomes a 503 page (or JSON) that says to try again in a few
  seconds, with Retry-After, and is counted; never a 500. The sso API's blueprints answer it in AWS's format
  (broker/http/aws_wire.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request

from sso_common.metrics import metrics
from sso_common.store.errors import RETRY_AFTER_SECONDS, StoreUnavailable
from sso_common.web import error_response

log = logging.getLogger(__name__)

UNAVAILABLE_TITLE = "Temporarily unavailable"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})  # metric labels; else "other"


def store_unavailable_message(error: StoreUnavailable) -> str:
    return error.public_message or (
        "The service cannot reach its data store right now, so nothing was done. "
        f"Try again in a few seconds (reference: {error.store})."
    )


def outage_answer(error: StoreUnavailable, answer: Response) -> Response:
    """`answer` (a 503 in its API's own format: the page, the sso API's, OAuth's, SCIM's) with Retry-After, the
    request logged and counted in `sso_refusals_total{reason="store_unavailable"}` (under the service name
    `install_operations` gave the app): every answer to a store outage goes through here."""
    log.warning("answered 503 on %s %s: %s", request.method, request.path, error)
    metrics().refusals.labels(current_app.config.get("SSO_SERVICE", current_app.name), "store_unavailable").inc()
    answer.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return answer


def engines(stores: Mapping[str, Any]) -> dict[str, Any]:
    """The stores to check, a routed state store counting as its two engines."""
    checked: dict[str, Any] = {}
    for name, store in stores.items():
        inner = getattr(store, "stores", None)
        if callable(inner):
            checked.update(inner())
        else:
            checked[name] = store
    return checked


def readiness(stores: Mapping[str, Any]) -> tuple[bool, dict[str, str]]:
    """(ready, {store: "ok" | "unavailable: ..."}), pinging each store that can be pinged."""
    checks: dict[str, str] = {}
    for name, store in engines(stores).items():
        ping = getattr(store, "ping", None)
        if ping is None:
            checks[name] = "ok"
            continue
        try:
            ping()
            checks[name] = "ok"
        except StoreUnavailable as down:
            checks[name] = f"unavailable: {down.problem}"
    return all(state == "ok" for state in checks.values()), checks


def install_operations(app: Flask, service: str, stores: Mapping[str, Any]) -> None:
    """Readiness, metrics and the StoreUnavailable answer for `app` (the portal or the IdP)."""
    counters = metrics()
    app.config["SSO_SERVICE"] = service

    @app.before_request
    def start_clock() -> None:
        g.sso_started, g.sso_cpu_started = time.perf_counter(), time.thread_time()

    @app.after_request
    def observe(response: Response) -> Response:
        started = g.get("sso_started")
        if started is not None:
            endpoint = request.url_rule.endpoint if request.url_rule is not None else "unmatched"
            method = request.method if request.method in HTTP_METHODS else "other"  # a client's word: bounded
            counters.requests.labels(service, endpoint, method, str(response.status_code)).observe(
                time.perf_counter() - started
            )
            counters.request_cpu.labels(service, endpoint, method).inc(time.thread_time() - g.sso_cpu_started)
        return response

    @app.get("/readyz")
    def readyz():
        ready, checks = readiness(stores)
        answer = jsonify(status="ready" if ready else "unavailable", service=service, checks=checks)
        answer.status_code = 200 if ready else 503
        return answer

    @app.get("/metrics")
    def prometheus_metrics():
        body, content_type = counters.exposition()
        return Response(body, mimetype=content_type.split(";")[0], content_type=content_type)

    @app.errorhandler(StoreUnavailable)
    def unavailable(error: StoreUnavailable):
        return outage_answer(error, error_response(store_unavailable_message(error), 503, UNAVAILABLE_TITLE))
