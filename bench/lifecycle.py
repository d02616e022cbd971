"""The identity lifecycle, measured: a full SCIM sync of a large directory, and the time from a change at the IdP
to its enforcement everywhere (issue 14).

    python -m bench.lifecycle [--users 5000] [--groups 50] [--runs 30] [--json PATH] [--quick]

1. Full sync. The directory is generated (bench.directory: N employees in G groups, one shared password hash),
   the stack starts on free ports with it (devstack.stack: emulator, IdP, portal), and the IdP's pusher does its
   start-up full sync to the portal's two SCIM targets (its OIDC and its SAML upstream). Reported per target from
   the IdP's own log line: the time, what it did, and the errors (failed pushes logged by the pusher, and the
   targets' last error).
2. Change to enforcement, `--runs` times, each with another person: they sign in to the portal (browser, OIDC),
   take STS credentials from its credentials panel and an sso API access token through the device flow
   (untimed); then the clock starts when the IdP's admin API has stored their `disable` (202), and three probes
   poll every 10 ms until each sees the refusal: the portal session (GET / answers 401), the API grant
   (GetRoleCredentials answers 401), and AWS (the credentials issued before are denied at the emulator). Reported:
   p50, p90, p99 and max of each, and of the slowest of the three per run ("everything enforced").
Everything runs on loopback, bounded: a probe gives up after 10 s (counted as a failure).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from bench.browser import Browser, forms
from bench.directory import GENERATED_PASSWORD, generate, username
from bench.flows import DEVICE_GRANT, OIDC_UPSTREAM, credential_forms, sign_in_at_idp

DIRECTORY_TOKEN = "demo-directory-admin-token"
PROBE_EVERY = 0.01
PROBE_LIMIT = 10.0
_SYNC_LINE = re.compile(r"full SCIM sync of (?P<target>[\w-]+) in (?P<seconds>[\d.]+) s: (?P<done>.*)")
_EXPORT = re.compile(r'export (AWS_[A-Z_]+)=(?:&#34;|&quot;|")([^"&]+)')


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "p50_ms": round(1000 * statistics.median(values), 1),
        "p90_ms": round(1000 * percentile(values, 0.9), 1),
        "p99_ms": round(1000 * percentile(values, 0.99), 1),
        "max_ms": round(1000 * max(values), 1),
    }


class Person:
    """One person signed in everywhere: a portal browser, STS credentials, an sso API access token."""

    def __init__(self, portal: str, name: str):
        self.portal, self.name = portal, name
        self.browser = Browser()
        login_page = self.browser.follow(self.browser.get(f"{portal}/login/{OIDC_UPSTREAM}"))
        accounts = self.browser.follow(sign_in_at_idp(self.browser, login_page, name, GENERATED_PASSWORD))
        role = credential_forms(accounts)[0]["fields"]
        self.account_id, self.role = role["account_id"], role["permission_set"]
        panel = self.browser.post(f"{portal}/credentials", role)
        keys = dict(_EXPORT.findall(panel.text))
        self.credentials = {
            "aws_access_key_id": keys["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": keys["AWS_SECRET_ACCESS_KEY"],
            "aws_session_token": keys["AWS_SESSION_TOKEN"],
        }
        self.api = Browser()
        client = self._json(
            "/client/register",
            {"clientName": "lifecycle-bench", "clientType": "public", "grantTypes": [DEVICE_GRANT, "refresh_token"]},
        )
        secret = {"clientId": client["clientId"], "clientSecret": client["clientSecret"]}
        device = self._json("/device_authorization", {**secret, "startUrl": portal})
        page = self.browser.get(f"{portal}/device?{urlencode({'user_code': device['userCode']})}")
        form = next(f for f in forms(page.text) if f["action"] == "/device")
        self.browser.post(f"{portal}/device", {**form["fields"], "decision": "approve"})
        self.token = self._json("/token", {**secret, "grantType": DEVICE_GRANT, "deviceCode": device["deviceCode"]})[
            "accessToken"
        ]

    def _json(self, path: str, body: dict) -> dict:
        answer = self.api.request(
            "POST", f"{self.portal}{path}", body=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        if answer.status != 200:
            raise RuntimeError(f"{path}: HTTP {answer.status}")
        return json.loads(answer.body)

    def portal_refused(self) -> bool:
        return self.browser.get(f"{self.portal}/").status == 401

    def api_refused(self) -> bool:
        query = urlencode({"role_name": self.role, "account_id": self.account_id})
        answer = self.api.get(
            f"{self.portal}/federation/credentials?{query}", headers={"x-amz-sso_bearer_token": self.token}
        )
        return answer.status == 401

    def close(self) -> None:
        self.browser.close()
        self.api.close()


def aws_refused(s3, bucket: str) -> bool:
    try:
        s3.list_objects_v2(Bucket=bucket, MaxKeys=1)
    except ClientError as error:
        return error.response["Error"]["Code"] == "AccessDenied"
    return False


def probe(check, started: float, results: dict, name: str) -> None:
    while time.monotonic() - started < PROBE_LIMIT:
        if check():
            results[name] = time.monotonic() - started
            return
        time.sleep(PROBE_EVERY)


def disable(idp: str, name: str) -> None:
    request = urllib.request.Request(
        f"{idp}/admin/directory/users/{name}/disable",
        method="POST",
        headers={"Authorization": f"Bearer {DIRECTORY_TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        if answer.status != 202:
            raise RuntimeError(f"disable {name}: HTTP {answer.status}")


def measure(stack, runs: int, users: int, log) -> dict:
    portal, idp, aws = (stack.addresses[key] for key in ("PORTAL_URL", "IDP_URL", "AWS_URL"))
    timings: dict[str, list[float]] = {
        "portal session": [],
        "sso API grant": [],
        "AWS credentials": [],
        "all three": [],
    }
    failures = 0
    for run in range(runs):
        name = username((run * 97 + 13) % users)
        person = Person(portal, name)
        account = person.account_id
        s3 = boto3.client(
            "s3",
            endpoint_url=aws,
            region_name="us-east-1",
            config=BotoConfig(retries={"max_attempts": 1}),
            **person.credentials,
        )
        bucket = f"employee-directory-photos-{account}"
        assert not aws_refused(s3, bucket) and not person.portal_refused() and not person.api_refused()
        results: dict[str, float] = {}
        started = time.monotonic()
        disable(idp, name)
        threads = [
            threading.Thread(target=probe, args=(person.portal_refused, started, results, "portal session")),
            threading.Thread(target=probe, args=(person.api_refused, started, results, "sso API grant")),
            threading.Thread(
                target=probe,
                args=(lambda s3=s3, bucket=bucket: aws_refused(s3, bucket), started, results, "AWS credentials"),
            ),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(PROBE_LIMIT + 5)
        person.close()
        if len(results) < 3:
            failures += 1
            log(f"  run {run + 1}: {name} not refused everywhere within {PROBE_LIMIT:.0f} s: {sorted(results)}")
            continue
        for key, value in results.items():
            timings[key].append(value)
        timings["all three"].append(max(results.values()))
        log(f"  run {run + 1}/{runs}: {name} " + ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in results.items()))
    return {"runs": runs, "failures": failures, **{key: summary(values) for key, values in timings.items()}}


def sync_figures(stack) -> dict:
    logs = stack.logs("idp")
    figures = {}
    for match in _SYNC_LINE.finditer(logs):
        figures[match.group("target")] = {"seconds": float(match.group("seconds")), "done": match.group("done")}
    failed_pushes = logs.count("SCIM push to ")
    request = urllib.request.Request(
        f"{stack.addresses['IDP_URL']}/admin/directory/sync", headers={"Authorization": f"Bearer {DIRECTORY_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        status = json.load(answer)
    return {
        "targets": figures,
        "failed_pushes_retried": failed_pushes,
        "last_errors": {t["name"]: t["last_error"] for t in status["targets"]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.lifecycle", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--quick", action="store_true", help="80 users, 3 runs: seconds (the smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.groups, args.runs = min(args.users, 80), min(args.groups, 5), min(args.runs, 3)
    from devstack.stack import Stack, free_addresses

    def log(line: str) -> None:
        print(line, flush=True)

    with tempfile.TemporaryDirectory(prefix="sso-lifecycle-") as scratch:
        info = generate(Path(scratch) / "generated", args.users, args.groups)
        os.environ["IDP_CONFIG"], os.environ["BROKER_CONFIG"] = info["idp_config"], info["broker_config"]
        addresses = free_addresses(instance=False)
        env = {
            "LOG_LEVEL": "info",
            "BROKER_REVOCATION_CLOCK_MARGIN_SECONDS": "0",
            "IDP_MAX_FAILURES_PER_ADDRESS": "100000",
        }
        began = time.monotonic()
        stack = Stack(Path(scratch) / "stack", addresses, workers=2, extra_env=env, provisioning_timeout=3600).start()
        try:
            took = time.monotonic() - began
            log(f"stack up with {args.users} users in {args.groups} groups, provisioned, in {took:.1f} s")
            sync = sync_figures(stack)
            for target, figure in sync["targets"].items():
                log(f"full sync to {target}: {figure['seconds']:.1f} s ({figure['done']})")
            log(f"failed pushes retried: {sync['failed_pushes_retried']}; last errors: {sync['last_errors']}")
            enforcement = measure(stack, args.runs, args.users, log)
        finally:
            stack.stop()
    report = {"users": args.users, "groups": args.groups, "full_sync": sync, "change_to_enforcement": enforcement}
    log("\nchange at the IdP -> enforcement (ms):")
    for key in ("portal session", "sso API grant", "AWS credentials", "all three"):
        figure = enforcement[key]
        log(
            f"  {key:16} p50 {figure.get('p50_ms')}  p90 {figure.get('p90_ms')}  p99 {figure.get('p99_ms')}  "
            f"max {figure.get('max_ms')}  (n={figure['count']})"
        )
    log(f"  failures: {enforcement['failures']} of {enforcement['runs']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 1 if enforcement["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
