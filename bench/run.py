"""The benchmark: start the stack in production mode, drive it from separate processes, measure.

Servers run exactly as in the demo (`devstack.stack.Stack`: moto server, provisioning, IAM enforcement,
then the IdP and the portal under granian), on free 127.0.0.1/localhost ports, reading a generated
directory of employees through IDP_CONFIG/BROKER_CONFIG. Load comes from `python -m bench.load`
processes over real HTTP; memory and CPU of every server are read from /proc (bench.monitor).
Every load run is bounded in operations and in time, and only loopback addresses are used.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench import directory as gen
from bench import figures
from bench.monitor import Monitor, argon2_verify_ms, machine_busy_seconds, request_cpu, request_cpu_spent
from devstack.processes import free_port

REPO = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).resolve().parent / "peers"
OIDC_SCOPE = "openid email profile groups"
PORTAL_CLIENT_SECRET = "demo-portal-oidc-secret"
MB = 1024 * 1024
SLOW_CLIENTS = 100  # connections per service dripping their request heads in the "slow" scenario
SERVERS = ("idp", "broker", "aws", "redis", "postgres", "nginx")  # the stack's processes, per service


@dataclass
class Config:
    instance_dir: Path
    users: int = 5000
    groups: int = 50
    concurrency: int = 8
    processes: int = 2  # load processes; threads per process = concurrency / processes
    workers: int = 2  # worker processes per service (WEB_WORKERS)
    logins_oidc: int = 1200
    logins_saml: int = 800
    reissues: int = 3000
    idp_flows: int = 2000
    warmup: int = 64  # logins before measuring (not counted)
    startup_runs: int = 3
    sessions_fill: int = 10000  # "sessions": AssumeRoleWithSAML calls issued between the two measured windows
    sessions_window: int = 1000  # ... and in each window
    calibration_seconds: float = 0.4  # the argon2id re-calibration after each row (the start's takes 1 s)
    soak_logins: int = 0  # 0: no soak
    max_seconds: float = 300.0  # per load run
    scenarios: tuple[str, ...] = ("startup", "oidc", "saml", "reissue", "idp", "sessions", "storm", "slow")
    server_env: dict = field(default_factory=dict)  # extra environment of the servers (experiments)
    replicas: int = 0  # 0: one IdP and one portal on SQLite; N: N of each behind nginx, Redis and PostgreSQL
    scim: bool = True  # False: no SCIM push (people enter the directory at sign-in)


@dataclass
class Row:
    scenario: str
    what: str
    ops: int = 0
    seconds: float = 0.0
    throughput: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    errors: int = 0
    unfinished: int = 0  # operations not started before the run's time limit
    rss_peak_mb: dict = field(default_factory=dict)
    rss_worker_peak_mb: dict = field(default_factory=dict)
    cpu_ms_per_op: dict = field(default_factory=dict)
    target: str = ""
    result: str = ""
    met: bool | None = None
    other_cores: float | None = None  # cores used by other processes on the machine during the run
    argon2_ms: float | None = None  # one argon2id verification's CPU ms, at the start of the benchmark
    argon2_ms_after: float | None = None  # ... and again right after this row
    drift: list = field(default_factory=list)  # why the machine was not steady during the row (bench.figures.drift)
    status: str = ""  # "yes" / "NO" / "drifting" (then `met` is what the figures would say) / "" (no target)
    outside_hash_ms: dict = field(default_factory=dict)  # own services' CPU ms/op without the password hashes
    # The own services' request threads, CPU ms/op by "METHOD endpoint" (their metrics): where the CPU goes
    request_cpu_ms: dict = field(default_factory=dict)
    error_samples: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)


class Bench:
    def __init__(self, config: Config, log=print):
        self.config = config
        self.log = log
        self.rows: list[Row] = []
        self.stack = None
        self.monitor: Monitor | None = None
        self.peer: subprocess.Popen | None = None
        self.peer_url: str | None = None
        self.users: list[str] = []
        self.calibration: dict = {}

    # -- lifecycle ----------------------------------------------------------------------------------

    def run(self) -> list[Row]:
        scenarios = self.config.scenarios
        self.calibrate()
        try:
            if "startup" in scenarios:
                self.scenario_startup()
            if set(scenarios) - {"startup"}:
                self.start_stack()
                self.warm_up()
                for name in ("oidc", "saml", "reissue", "idp", "sessions", "storm", "slow", "soak"):
                    if name in scenarios:
                        getattr(self, f"scenario_{name}")()
        finally:
            self.stop()
            self.calibration["argon2_verify_ms_end"] = round(argon2_verify_ms(), 1)
            self.calibration["load_average_end"] = os.getloadavg()
        return self.rows

    def calibrate(self) -> None:
        """One argon2id verification at the IdP's cost, timed on one core before anything runs: the yardstick of
        every row (a password login cannot be cheaper), re-timed after each row to see the machine drift."""
        self.calibration = {"argon2_verify_ms": round(argon2_verify_ms(), 1), "load_average": os.getloadavg()}
        self.log(
            f"this machine now: one argon2id verification {self.calibration['argon2_verify_ms']} ms of CPU "
            f"(stack facts: ~17.5 ms on a quiet machine); load average {self.calibration['load_average']}"
        )

    def start_stack(self) -> None:
        from devstack.stack import Stack, free_addresses

        generated = self.config.instance_dir / "generated"
        began = time.monotonic()
        info = gen.generate(generated, self.config.users, self.config.groups)
        self.users = info["users"]
        self.log(
            f"generated {len(self.users)} users in {len(info['groups'])} groups "
            f"({time.monotonic() - began:.1f} s) in {generated}"
        )
        if not self.config.scim:
            broker_config = Path(info["broker_config"])
            broker_config.write_text(re.sub(r"\n\s*scim:\n(\s+token[^\n]*\n)+", "\n", broker_config.read_text()))
            self.config.server_env.setdefault("IDP_SCIM_PUSH", "false")
        # The stack reads BROKER_CONFIG from this process's environment too (provisioning).
        os.environ["IDP_CONFIG"], os.environ["BROKER_CONFIG"] = info["idp_config"], info["broker_config"]
        if self.config.replicas:
            self.start_replicated()
            return
        addresses = free_addresses(instance=False)
        state = self.config.instance_dir / "stack"
        shutil.rmtree(state, ignore_errors=True)
        began = time.monotonic()
        self.stack = Stack(
            state, addresses, workers=self.config.workers, extra_env={"LOG_LEVEL": "warning", **self.config.server_env}
        ).start()
        self.log(
            f"stack up in {time.monotonic() - began:.1f} s: portal {addresses['PORTAL_URL']}, "
            f"IdP {addresses['IDP_URL']}, AWS emulator {addresses['AWS_URL']}"
        )
        self.portal, self.idp, self.aws = (addresses[k] for k in ("PORTAL_URL", "IDP_URL", "AWS_URL"))
        self.monitor = Monitor(
            {
                "idp": self.stack.processes["idp"].pid,
                "broker": self.stack.processes["broker"].pid,
                "aws": self.stack.moto.pid,
            }
        )

    def start_replicated(self) -> None:
        """N replicas of each service behind nginx, state in Redis and records in PostgreSQL (devstack/replicas.py).
        CPU is reported per service as the sum of its replicas ("idp", "broker"), and for the engines ("redis",
        "postgres", "nginx") as their own columns."""
        from devstack.replicas import ReplicatedStack

        state = self.config.instance_dir / "stack"
        shutil.rmtree(state, ignore_errors=True)
        began = time.monotonic()
        self.stack = ReplicatedStack(
            state,
            replicas=self.config.replicas,
            workers=self.config.workers,
            extra_env={"LOG_LEVEL": "warning", **self.config.server_env},
        ).start()
        addresses = self.stack.addresses
        self.log(
            f"replicated stack up in {time.monotonic() - began:.1f} s: {self.config.replicas} x (IdP, portal) behind "
            f"nginx, portal {addresses['PORTAL_URL']}, IdP {addresses['IDP_URL']}, AWS emulator {addresses['AWS_URL']}"
        )
        self.portal, self.idp, self.aws = (addresses[k] for k in ("PORTAL_URL", "IDP_URL", "AWS_URL"))
        pids = {member.name: member.process.pid for member in self.stack.members}
        postmaster = (self.stack.postgres.data / "postmaster.pid").read_text().split()[0]
        self.monitor = Monitor(
            {
                **pids,
                "aws": self.stack.moto.pid,
                "redis": self.stack.redis.process.pid,
                "postgres": int(postmaster),
                "nginx": self.stack.nginx.process.pid,
            }
        )

    def stop(self) -> None:
        if self.monitor:
            self.monitor.stop()
        if self.peer is not None and self.peer.poll() is None:
            self.peer.send_signal(signal.SIGTERM)
            try:
                self.peer.wait(5)
            except subprocess.TimeoutExpired:
                self.peer.kill()
        if self.stack is not None:
            self.stack.stop()
            self.stack = None

    # -- load -------------------------------------------------------------------------------------

    def drive(
        self, flow: str, params: dict, items: list, *, concurrency: int | None = None, max_seconds: float | None = None
    ) -> dict:
        """Run `flow` over `items` from load processes; returns merged results and per-server costs."""
        concurrency = concurrency or self.config.concurrency
        processes = max(1, min(self.config.processes, concurrency))
        threads = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        workers = []
        for index in range(processes):
            spec = {
                "flow": flow,
                "params": params,
                "items": items[index::processes],
                "threads": threads[index],
                "duration": max_seconds or self.config.max_seconds,
                "first_slot": sum(threads[:index]),
            }
            process = subprocess.Popen(
                [sys.executable, "-m", "bench.load"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=REPO,
                env=env,
            )
            process.stdin.write(json.dumps(spec) + "\n")
            process.stdin.flush()
            workers.append(process)
        for process in workers:
            line = process.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"load process failed to start: {line}{process.stdout.read()[-2000:]}")
        self.monitor.reset_peaks()
        endpoints_before = self._request_cpu()
        cpu_before = self.monitor.cpu()
        busy_before, wall_before, own_before = machine_busy_seconds(), time.monotonic(), time.process_time()
        for process in workers:
            process.stdin.write("go\n")
            process.stdin.flush()
        results = []
        for process in workers:
            output, _ = process.communicate(timeout=(max_seconds or self.config.max_seconds) + 120)
            result = json.loads(output.strip().splitlines()[-1])
            if "crash" in result:
                raise RuntimeError("load process crashed:\n" + result["crash"])
            results.append(result)
        cpu_after = self.monitor.cpu()
        busy, wall = machine_busy_seconds() - busy_before, time.monotonic() - wall_before
        endpoints_after = self._request_cpu()
        harness = time.process_time() - own_before  # this process: its /proc sampling thread
        totals, largest = self.monitor.peaks()
        cpu_after, cpu_before, totals = (_by_service(x) for x in (cpu_after, cpu_before, totals))
        largest = {name: max(v for k, v in largest.items() if _service(k) == name) for name in map(_service, largest)}
        latencies = sorted(x for r in results for x in r["latencies"])
        finished = [x for r in results for x in r["finished"]]
        began = min(r["began"] for r in results)
        seconds = (max(finished) - began) if finished else 0.0
        ok = sum(r["ok"] for r in results)
        merged = {
            "ok": ok,
            "failed": sum(r["failed"] for r in results),
            "not_done": sum(r["not_done"] for r in results),
            "setup_errors": [e for r in results for e in r["setup_errors"]],
            "errors": [e for r in results for e in r["errors"]],
            "seconds": seconds,
            "throughput": ok / seconds if seconds else 0.0,
            "latencies": latencies,
            "cpu": {name: cpu_after.get(name, 0) - cpu_before.get(name, 0) for name in cpu_after},
            "rss_peak": totals,
            "rss_worker_peak": largest,
            "request_cpu": {
                name: request_cpu_spent(endpoints_before.get(name, {}), spent)
                for name, spent in endpoints_after.items()
            },
        }
        ours = sum(merged["cpu"].values()) + sum(r["cpu_seconds"] for r in results) + harness
        # Cores kept busy by everything else on the machine meanwhile (other people's tests, say):
        # the figures above are only comparable between runs where this is near zero.
        merged["other_cores"] = max(0.0, (busy - ours) / wall) if wall else 0.0
        merged["client_cpu_ms_per_op"] = sum(r["cpu_seconds"] for r in results) * 1000 / ok if ok else 0.0
        # Operations left when the run's time limit struck are not errors of the system: counted apart.
        merged["error_count"] = merged["failed"] + len(merged["setup_errors"])
        return merged

    def row(
        self,
        scenario: str,
        what: str,
        result: dict,
        target: str = "",
        met: bool | None = None,
        result_text: str = "",
        servers: tuple[str, ...] = SERVERS,
        hashes: dict | None = None,
        **extra,
    ) -> Row:
        """One line of the table. The argon2id calibration is timed again right after the row; with the row's
        other load it says whether the machine drifted meanwhile (then the row is "drifting", not met). `hashes`
        (password hashes per operation and service) adds the own services' CPU outside the hash."""
        lat = result["latencies"]

        def pct(q: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1) if lat else None

        row = Row(
            scenario=scenario,
            what=what,
            ops=result["ok"],
            seconds=round(result["seconds"], 2),
            throughput=None if result["throughput"] is None else round(result["throughput"], 1),
            p50=pct(0.50),
            p95=pct(0.95),
            p99=pct(0.99),
            errors=result["error_count"],
            unfinished=result.get("not_done", 0),
            rss_peak_mb={k: round(v / MB, 1) for k, v in result["rss_peak"].items() if k in servers},
            rss_worker_peak_mb={k: round(v / MB, 1) for k, v in result["rss_worker_peak"].items() if k in servers},
            cpu_ms_per_op={
                **{
                    k: round(v * 1000 / result["ok"], 2)
                    for k, v in result["cpu"].items()
                    if k in servers and result["ok"]
                },
                **({"client": round(result["client_cpu_ms_per_op"], 2)} if result.get("client_cpu_ms_per_op") else {}),
            },
            target=target,
            result=result_text,
            met=met,
            other_cores=round(result.get("other_cores", 0.0), 2) if "other_cores" in result else None,
            error_samples=(result["setup_errors"] + result["errors"])[:5],
            request_cpu_ms={
                name: {key: round(seconds * 1000 / result["ok"], 3) for key, seconds in spent.items()}
                for name, spent in result.get("request_cpu", {}).items()
                if spent and result["ok"]
            },
            extra=extra,
        )
        row.argon2_ms = self.calibration.get("argon2_verify_ms")
        row.argon2_ms_after = round(argon2_verify_ms(self.config.calibration_seconds), 1)
        if hashes is not None:
            row.outside_hash_ms = figures.outside_hash(row.cpu_ms_per_op, row.argon2_ms, hashes)
        self.judge(row)
        self.rows.append(row)
        self.log(format_row_line(row))
        where = format_request_cpu(row)
        if where:
            self.log(f"    {where}")
        return row

    @staticmethod
    def judge(row: Row) -> None:
        row.drift = figures.drift(row.other_cores, row.argon2_ms, row.argon2_ms_after)
        row.status = figures.status(row.met, row.drift)
        if row.status == "drifting":
            row.result += f" [drifting: {'; '.join(row.drift)}; on a steady machine: {'met' if row.met else 'NOT met'}]"

    # -- scenarios --------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """A few logins through both protocols on every worker (discovery, JWKS and metadata fetches,
        STS clients, role sessions): not measured."""
        n = self.config.warmup
        items = [
            [user, up]
            for user, up in zip(self.users[-n:], ["example-corp-oidc", "example-corp-saml"] * n, strict=False)
        ]
        result = self.drive("PortalLogin", {"portal": self.portal, "password": gen.GENERATED_PASSWORD}, items)
        if result["error_count"]:
            raise RuntimeError("warm-up logins failed: " + "; ".join((result["setup_errors"] + result["errors"])[:5]))
        self.log(f"warm-up: {result['ok']} logins, no errors")

    def _request_cpu(self) -> dict[str, dict[str, float]]:
        """Each own service's request CPU by endpoint so far (its metrics; none behind the replicas' edge)."""
        return {name: request_cpu(url) for name, url in (("idp", self.idp), ("broker", self.portal))}

    def login_figures(self, result: dict) -> dict:
        """CPU ms per login over the stack's processes and the load client, the 2-core ceiling it allows
        (2,000 / that), and the own services' CPU outside the password hash."""
        if not result["ok"]:
            return {"total_ms": None, "ceiling": None, "outside": {}}
        per_service = {k: v * 1000 / result["ok"] for k, v in result["cpu"].items() if k in SERVERS}
        total = sum(per_service.values()) + result.get("client_cpu_ms_per_op", 0.0)
        return {
            "total_ms": total,
            "ceiling": figures.ceiling(total),
            "outside": figures.outside_hash(per_service, self.calibration.get("argon2_verify_ms")),
        }

    def ceiling(self, result: dict) -> str:
        """What the CPU accounting says the machine could do at best: two cores divided by the CPU every
        process (servers and load client) spent per login; the password hash alone; the own services' CPU
        outside the hash (calibration x hashes per login taken off)."""
        found = self.login_figures(result)
        if found["total_ms"] is None:
            return ""
        cores = figures.CEILING_CORES
        argon2 = self.calibration.get("argon2_verify_ms")
        outside = found["outside"]
        return (
            f"CPU/login {found['total_ms']:.1f} ms over all processes: {cores}-core ceiling {found['ceiling']:.1f}/s"
            + (f"; argon2id alone ({argon2} ms): {cores * 1000 / argon2:.0f}/s" if argon2 else "")
            + "; CPU outside the hash: "
            + ", ".join(f"{k} {v:.1f}" for k, v in outside.items())
        )

    def scenario_oidc(self) -> None:
        n = self.config.logins_oidc
        result = self.drive(
            "PortalLogin",
            {"portal": self.portal, "password": gen.GENERATED_PASSWORD, "upstream": "example-corp-oidc"},
            self.users[:n],
        )
        self.login_row(
            "1 login OIDC",
            f"{n} distinct users, password + code/PKCE + callback + STS, {self.config.concurrency} clients",
            result,
            rate=50,
            own=8,
        )

    def login_row(self, scenario: str, what: str, result: dict, *, rate: float, own: float) -> Row:
        """A password login's targets (issue 18): the 2-core ceiling from CPU per login, the own services' CPU
        outside the hash, zero errors."""
        found = self.login_figures(result)
        met = (
            result["error_count"] == 0
            and found["ceiling"] is not None
            and found["ceiling"] >= rate
            and found["outside"].get("own", float("inf")) <= own
        )
        return self.row(
            scenario,
            what,
            result,
            f"2-core ceiling >= {rate}/s; idp + broker outside the hash <= {own} ms; 0 errors",
            met,
            self.ceiling(result),
            hashes=figures.HASHES_PER_LOGIN,
            total_cpu_ms=None if found["total_ms"] is None else round(found["total_ms"], 2),
            ceiling=None if found["ceiling"] is None else round(found["ceiling"], 1),
        )

    def scenario_saml(self) -> None:
        n = self.config.logins_saml
        start = self.config.logins_oidc
        result = self.drive(
            "PortalLogin",
            {"portal": self.portal, "password": gen.GENERATED_PASSWORD, "upstream": "example-corp-saml"},
            self.users[start : start + n],
        )
        self.login_row(
            "2 login SAML",
            f"{n} distinct users, password + AuthnRequest/Response + ACS + STS, {self.config.concurrency} clients",
            result,
            rate=42,
            own=12,
        )

    def _sts_direct_params(self) -> dict:
        """The broker's own AssumeRoleWithSAML request for one generated user, built like the broker does."""
        import base64

        from broker.aws.assertion import build_saml_response
        from broker.core.access import load_access
        from broker.core.entitlements import check_entitlement
        from broker.core.identity import Identity
        from sso_common.keys import load_or_create_signing_identity

        access = load_access(Path(os.environ["BROKER_CONFIG"]).parent / "access.yaml")
        user = self.users[0]
        identity = Identity(
            subject="bench-subject",
            username=user,
            email=f"{user}@example.com",
            display_name=user,
            groups=frozenset({gen.group_name(0)}),
            department="Engineering",
            authn_methods=frozenset({"pwd"}),
            issuer=self.idp,
            auth_time=int(time.time()),
        )
        entitlement = None
        for assignment in access.assignments:
            if assignment.group == gen.group_name(0):
                entitlement = check_entitlement(identity, access, assignment.account_id, assignment.permission_set)
                break
        entity = f"{self.portal}/saml/idp-metadata"
        signing = load_or_create_signing_identity(
            self.stack.instance_dir / "broker" / "keys", "aws-idp-signing", entity
        )
        assertion = base64.b64encode(build_saml_response(identity, entitlement, entity, signing)).decode()
        return {
            "endpoint": self.aws,
            "region": access.region,
            "access_key": self.stack.aws_env["AWS_ACCESS_KEY_ID"],
            "secret_key": self.stack.aws_env["AWS_SECRET_ACCESS_KEY"],
            "account_id": entitlement.account_id,
            "role_arn": entitlement.role_arn,
            "provider_arn": entitlement.provider_arn,
            "assertion": assertion,
            "duration": entitlement.session_duration,
        }

    def scenario_reissue(self) -> None:
        n = self.config.reissues
        c = self.config.concurrency
        # Each client thread signs in once (setup, not measured) as its own person, then asks again and again.
        portal = self.drive("Reissue", self._reissue_params(), list(range(n)))
        direct = self.drive("StsDirect", self._sts_direct_params(), list(range(n)))
        ratio = portal["throughput"] / direct["throughput"] if direct["throughput"] else 0.0
        broker_ms = portal["cpu"].get("broker", 0) * 1000 / portal["ok"] if portal["ok"] else 0.0
        # The share of the broker's CPU spent in the STS call itself (building, signing and sending the request
        # and parsing the answer), from a separate profiled pass: py-spy samples the threads holding the GIL; the
        # share of samples inside the call (bench.run._in_sts_call) is taken off.
        sts_share = self.sts_share_of_broker_cpu(min(n, 600))
        own_ms = broker_ms * (1 - sts_share) if sts_share is not None else None
        met = own_ms is not None and own_ms <= 1.5 and portal["error_count"] == 0
        self.row(
            "3 credentials again",
            f"signed-in user, portal POST /credentials, {c} clients",
            portal,
            "portal CPU <= 1.5 ms/issuance outside the STS call",
            met,
            f"{ratio:.0%} of STS alone; broker CPU/issuance {broker_ms:.2f} ms, "
            + (
                f"{own_ms:.2f} ms without the STS call ({sts_share:.0%} of it in the call)"
                if own_ms is not None
                else "STS share not measured (py-spy missing)"
            ),
            ratio=round(ratio, 3),
            broker_cpu_ms=round(broker_ms, 2),
            broker_cpu_ms_without_sts=None if own_ms is None else round(own_ms, 2),
            sts_call_share=sts_share,
        )
        self.row(
            "3 STS alone",
            f"AssumeRoleWithSAML straight to the emulator (boto3), {c} clients",
            direct,
            "(baseline)",
            None,
            servers=("aws",),
        )
        api = self.drive(
            "ApiReissue",
            {
                **self._reissue_params(),
                "usernames": self.users[-self.config.warmup - 3 * c : -self.config.warmup - 2 * c],
            },
            list(range(n)),
        )
        api_ratio = api["throughput"] / direct["throughput"] if direct["throughput"] else 0.0
        api_ms = api["cpu"].get("broker", 0) * 1000 / api["ok"] if api["ok"] else 0.0
        api_own = api_ms * (1 - sts_share) if sts_share is not None else None
        self.row(
            "3 credentials again: API",
            f"GetRoleCredentials (GET /federation/credentials, bearer token), {c} clients",
            api,
            "as above",
            api_own is not None and api_own <= 1.5 and api["error_count"] == 0,
            f"{api_ratio:.0%} of STS alone; broker CPU/issuance {api_ms:.2f} ms"
            + (
                f", about {api_own:.2f} ms without the STS call (the portal pass's STS share)"
                if api_own is not None
                else ""
            ),
            ratio=round(api_ratio, 3),
        )

    def _reissue_params(self) -> dict:
        c = self.config.concurrency
        return {
            "portal": self.portal,
            "password": gen.GENERATED_PASSWORD,
            "usernames": self.users[-self.config.warmup - 2 * c : -self.config.warmup - c],
        }

    def sts_share_of_broker_cpu(self, n: int) -> float | None:
        # beside this Python, or beside the project venv's (bench/paired.py's overlay_python has no scripts)
        candidates = [Path(sys.executable).parent / "py-spy"] + [
            Path(path).parents[2] / "bin" / "py-spy" for path in sys.path if path.endswith("site-packages")
        ]
        spy = shutil.which("py-spy") or next((str(c) for c in candidates if c.exists()), str(candidates[0]))
        if not Path(spy).exists():
            self.log("py-spy is not installed: the STS share of the broker's CPU is not measured")
            return None
        out = self.config.instance_dir / "broker-issuance.pyspy.txt"
        profiler = subprocess.Popen(
            [
                spy,
                "record",
                "--gil",
                "--subprocesses",
                "--nonblocking",
                "-r",
                "200",
                "-f",
                "raw",
                "-o",
                str(out),
                "-p",
                str(self.stack.processes["broker"].pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(1.0)
            self.drive("Reissue", self._reissue_params(), list(range(n)))
        finally:
            profiler.send_signal(signal.SIGINT)
            try:
                profiler.wait(30)
            except subprocess.TimeoutExpired:
                profiler.kill()
        if not out.exists():
            return None
        total = inside = 0
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            total += int(count)
            if any(_in_sts_call(frame) for frame in stack.split(";")):
                inside += int(count)
        return round(inside / total, 3) if total else None

    def start_peer(self) -> bool:
        if shutil.which("node") is None:
            self.log("node is not installed: the oidc-provider comparison is skipped")
            return False
        if not (PEERS / "node_modules" / "oidc-provider").exists():
            if shutil.which("npm") is None:
                self.log("npm is not installed: the oidc-provider comparison is skipped")
                return False
            self.log("installing oidc-provider into bench/peers/node_modules (npm ci)")
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PEERS, check=True, timeout=300
            )
        port = free_port()
        self.peer_redirect = "http://127.0.0.1:9/callback"  # never contacted: the client stops at the redirect
        log = (self.config.instance_dir / "stack" / "logs" / "oidc-provider.log").open("ab")
        self.peer = subprocess.Popen(
            ["node", str(PEERS / "oidc_provider_peer.mjs")],
            cwd=PEERS,
            env={**os.environ, "PORT": str(port), "REDIRECT_URI": self.peer_redirect, "NODE_ENV": "production"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.peer_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.peer_url}/.well-known/openid-configuration", timeout=1).status_code == 200:
                    self.monitor.add("oidc-provider", self.peer.pid)
                    return True
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("oidc-provider did not start")

    def scenario_idp(self) -> None:
        n = self.config.idp_flows
        c = self.config.concurrency
        ours = self.drive(
            "IdPCodeFlow",
            {
                "authorize_url": f"{self.idp}/oidc/authorize",
                "token_url": f"{self.idp}/oidc/token",
                "client_id": "access-portal",
                "client_secret": PORTAL_CLIENT_SECRET,
                "redirect_uri": f"{self.portal}/login/example-corp-oidc/callback",
                "scope": OIDC_SCOPE,
                "login": "form",
                "usernames": self.users[-self.config.warmup - c : -self.config.warmup],
                "password": gen.GENERATED_PASSWORD,
            },
            list(range(n)),
        )
        if not self.start_peer():
            self.row(
                "4 IdP, session", f"authorize + code exchange, {c} clients (no peer to compare)", ours, servers=("idp",)
            )
            return
        peer = self.drive(
            "IdPCodeFlow",
            {
                "authorize_url": f"{self.peer_url}/auth",
                "token_url": f"{self.peer_url}/token",
                "client_id": "bench-client",
                "client_secret": "bench-client-secret",
                "redirect_uri": self.peer_redirect,
                "scope": OIDC_SCOPE,
                "login": "auto",
            },
            list(range(n)),
        )
        ours_cpu = ours["cpu"]["idp"] * 1000 / max(1, ours["ok"])
        peer_cpu = peer["cpu"]["oidc-provider"] * 1000 / max(1, peer["ok"])
        met = ours_cpu <= peer_cpu and ours["error_count"] == 0
        self.row(
            "4 IdP, session: ours",
            f"authorize + code exchange (PKCE, RS256 ID token), {c} clients",
            ours,
            "IdP CPU/flow <= oidc-provider's",
            met,
            f"{ours['throughput'] / max(peer['throughput'], 1e-9):.0%} of oidc-provider's rate; "
            f"{ours_cpu:.2f} vs {peer_cpu:.2f} ms server CPU/flow",
            servers=("idp",),
            idp_cpu_ms=round(ours_cpu, 2),
            peer_cpu_ms=round(peer_cpu, 2),
        )
        self.row(
            "4 IdP, session: oidc-provider",
            "the same flow against oidc-provider (node, one process)",
            peer,
            "(peer)",
            None,
            servers=("oidc-provider",),
        )

    def scenario_storm(self) -> None:
        users = self.users
        items = [[user, "example-corp-oidc" if i % 2 == 0 else "example-corp-saml"] for i, user in enumerate(users)]
        result = self.drive(
            "PortalLogin",
            {"portal": self.portal, "password": gen.GENERATED_PASSWORD},
            items,
            max_seconds=max(self.config.max_seconds, len(items) / 5),
        )
        self.row(
            "7 storm",
            f"all {len(users)} employees ({self.config.groups} groups) log in and get credentials, "
            f"half OIDC half SAML, {self.config.concurrency} clients",
            result,
            "0 errors; report total time",
            result["error_count"] == 0 and result["not_done"] == 0,
            f"{result['ok']} of {len(users)} logins in {result['seconds']:.1f} s; " + self.ceiling(result),
        )

    def scenario_slow(self) -> None:
        """Logins and /healthz while SLOW_CLIENTS connections per service drip their request heads (one byte a
        second): the serving stack must keep answering (docs/architecture.md, Serving)."""
        from bench.slow import Drippers

        n = min(self.config.logins_oidc, 200)
        urls = {"idp": self.stack.addresses["IDP_URL"], "broker": self.stack.addresses["PORTAL_URL"]}
        drippers = [Drippers(url, SLOW_CLIENTS) for url in urls.values()]
        try:
            time.sleep(1.5)  # slow, not idle: a byte or two more on every connection
            healthz = {}
            for name, url in urls.items():
                began = time.monotonic()
                answer = requests.get(f"{url}/healthz", timeout=10)
                healthz[name] = round((time.monotonic() - began) * 1000, 1) if answer.status_code == 200 else None
            result = self.drive(
                "PortalLogin",
                {"portal": self.portal, "password": gen.GENERATED_PASSWORD, "upstream": "example-corp-oidc"},
                self.users[-n:],
            )
            still_open = sum(d.open() for d in drippers)
        finally:
            for dripper in drippers:
                dripper.close()
        answered = all(ms is not None for ms in healthz.values())
        self.row(
            "8 slow clients",
            f"{n} OIDC logins and /healthz while {SLOW_CLIENTS} connections per service drip their headers",
            result,
            "answers, 0 errors",
            answered and result["error_count"] == 0,
            f"/healthz IdP {healthz['idp']} ms, portal {healthz['broker']} ms; {still_open} of "
            f"{2 * SLOW_CLIENTS} slow connections still open at the end",
            healthz_ms=healthz,
        )

    def scenario_soak(self) -> None:
        """10,000 logins (alternating protocols) in batches of 1,000; RSS of every server process after
        each batch. Flat means: growth from the 2nd to the last thousand within a few MB."""
        total = self.config.soak_logins
        batch = 1000 if total >= 2000 else max(1, total // 4)
        samples: list[dict] = []
        all_latencies, ok, errors, not_done, seconds, other = [], 0, 0, 0, 0.0, 0.0
        for done in range(0, total, batch):
            items = [
                [self.users[(done + i) % len(self.users)], "example-corp-oidc" if i % 2 == 0 else "example-corp-saml"]
                for i in range(min(batch, total - done))
            ]
            result = self.drive("PortalLogin", {"portal": self.portal, "password": gen.GENERATED_PASSWORD}, items)
            ok += result["ok"]
            errors += result["error_count"]
            not_done += result["not_done"]
            seconds += result["seconds"]
            all_latencies += result["latencies"]
            other = max(other, result["other_cores"])  # the busiest batch
            sizes = self.monitor.per_process_rss()
            private_pss = self.monitor.per_process_private_and_pss()
            samples.append(
                {
                    "logins": done + len(items),
                    **{name: [round(s / MB, 1) for s in values] for name, values in sizes.items()},
                    "private": {name: [round(p / MB, 1) for p, _ in values] for name, values in private_pss.items()},
                    "pss_total": {name: round(sum(q for _, q in pairs) / MB, 1) for name, pairs in private_pss.items()},
                }
            )
            self.log(
                f"soak: {done + len(items)} logins, RSS MB per process: "
                + ", ".join(f"{k} {v}" for k, v in samples[-1].items() if k in sizes)
                + "; private MB: "
                + ", ".join(f"{k} {v}" for k, v in samples[-1]["private"].items())
                + "; PSS MB per server: "
                + ", ".join(f"{k} {v}" for k, v in samples[-1]["pss_total"].items())
            )
        second = samples[1] if len(samples) > 1 else samples[0]
        last = samples[-1]
        growth = {name: round(sum(last[name]) - sum(second[name]), 1) for name in ("idp", "broker", "aws")}
        worker_max = {name: max(last[name]) for name in ("idp", "broker", "aws")}
        private_max = {name: max(last["private"][name], default=0) for name in ("idp", "broker", "aws")}
        # The emulator keeps every session it issues (moto stores state in memory for ever, unlike AWS): its
        # growth is reported, but the target is about this project's servers.
        ours = ("idp", "broker")
        met = (
            errors == 0
            and not_done == 0
            and all(worker_max[n] <= 150 for n in ours)
            and all(growth[n] <= 10 for n in ours)
        )
        merged = {
            "ok": ok,
            "error_count": errors,
            "not_done": not_done,
            "seconds": seconds,
            "throughput": ok / seconds if seconds else 0,
            "latencies": sorted(all_latencies),
            "cpu": {},
            "rss_peak": {},
            "rss_worker_peak": {},
            "setup_errors": [],
            "errors": [],
            "other_cores": other,
        }
        self.row(
            "6 soak",
            f"{total} logins, half OIDC half SAML, {self.config.concurrency} clients",
            merged,
            "<= 150 MB per worker; flat from 2k to the end (IdP, portal)",
            met,
            "largest process MB "
            + ", ".join(f"{k} {v}" for k, v in worker_max.items())
            + "; growth 2k->end MB "
            + ", ".join(f"{k} {v:+}" for k, v in growth.items())
            + "; largest private MB "
            + ", ".join(f"{k} {v}" for k, v in private_max.items())
            + "; PSS MB per server "
            + ", ".join(f"{k} {last['pss_total'][k]}" for k in ("idp", "broker", "aws")),
            samples=samples,
            growth_mb=growth,
        )

    def scenario_startup(self) -> None:
        """`./run demo` with the default config on free ports: seconds until it says it is up (the emulator
        provisioned, IAM enforcement on, every service answering /healthz), then checked from here. First run
        on an empty instance folder (keys are generated)."""
        folder = self.config.instance_dir / "startup"
        shutil.rmtree(folder, ignore_errors=True)
        runs = []
        # `./run demo` when this is the project's venv; else (another tree's Python, bench/paired.py's
        # overlay_python) what it runs, with this Python
        own_venv = Path(sys.prefix).resolve() == (REPO / ".venv").resolve()
        command = [str(REPO / "run"), "demo"] if own_venv else [sys.executable, "-m", "devstack.stack"]
        for attempt in range(self.config.startup_runs):
            runs.append(time_startup(command, REPO, folder))
            took = runs[-1]["seconds"]
            self.log(
                f"start-up run {attempt + 1}: {f'{took:.2f} s' if took else 'FAILED'}, "
                f"{runs[-1]['cpu_seconds']:.1f} s of CPU, other load {runs[-1]['other_cores']:.2f} cores"
                f"{' (empty instance folder)' if attempt == 0 else ''}"
            )
        self.startup_row(runs)

    def startup_row(self, runs: list[dict], scenario: str = "5 start-up") -> Row:
        times = [run["seconds"] for run in runs]
        good = [t for t in times if t is not None]
        walls = sum(run["wall"] for run in runs)
        result = {
            "ok": len(good),
            "error_count": len(times) - len(good),
            "seconds": sum(good),
            "throughput": None,
            "latencies": sorted(good),
            "cpu": {},
            "rss_peak": {},
            "rss_worker_peak": {},
            "setup_errors": [],
            "errors": [],
            "other_cores": sum(run["other_cores"] * run["wall"] for run in runs) / walls if walls else 0.0,
        }
        worst = max(good) if good else None
        row = self.row(
            scenario,
            "`./run demo` until it is up: provisioned, IAM enforced, IdP and portal /healthz, the emulator answering",
            result,
            "<= 1.5 s",
            bool(good) and len(good) == len(times) and worst <= 1.5,
            "runs "
            + ", ".join(f"{t:.2f} s" if t else "failed" for t in times)
            + " (first on an empty instance folder); CPU of the start-up "
            + ", ".join(f"{run['cpu_seconds']:.1f} s" for run in runs),
            times=times,
            cpu_seconds=[round(run["cpu_seconds"], 2) for run in runs],
        )
        row.throughput = None
        return row

    def scenario_sessions(self) -> None:
        """AssumeRoleWithSAML straight to the emulator as its sessions accumulate: the emulator's CPU per call over
        the first `sessions_window` calls, and again after `sessions_fill` calls in all (moto found the caller's
        access key by scanning every session it had issued, so the call grew dearer, issue 18)."""
        window, fill = self.config.sessions_window, self.config.sessions_fill
        params = self._sts_direct_params()
        # Each drive signs with sessions of its own, made in its setup: the last window's callers are newer than
        # every session filled in between (where a scan of the sessions by access key costs most).
        first = self.drive("StsDirect", params, list(range(window)))
        first_caller = self.drive("StsDirect", {**params, "call": "caller"}, list(range(window)))
        filled = self.drive(
            "StsDirect", params, list(range(max(0, fill - window))), max_seconds=max(self.config.max_seconds, fill / 10)
        )
        last = self.drive("StsDirect", params, list(range(window)))
        last_caller = self.drive("StsDirect", {**params, "call": "caller"}, list(range(window)))

        def per_call(result: dict) -> float | None:
            return result["cpu"].get("aws", 0.0) * 1000 / result["ok"] if result["ok"] else None

        first_ms, last_ms = per_call(first), per_call(last)
        caller_ms = (per_call(first_caller), per_call(last_caller))
        everything = (first, first_caller, filled, last, last_caller)
        errors = sum(r["error_count"] for r in everything)
        merged = {
            **last,
            "error_count": errors,
            "not_done": sum(r["not_done"] for r in everything),
            "setup_errors": [e for r in everything for e in r["setup_errors"]],
            "errors": [e for r in everything for e in r["errors"]],
            "other_cores": max(first["other_cores"], last["other_cores"]),
        }
        met = errors == 0 and first_ms is not None and last_ms is not None and figures.flat(first_ms, last_ms)
        issued = window + max(0, fill - window)
        self.row(
            "9 emulator sessions",
            f"AssumeRoleWithSAML straight to the emulator: calls 1-{window} and {issued + 1}-{issued + window}, "
            f"{self.config.concurrency} clients",
            merged,
            f"emulator CPU/call after {issued} sessions within 10% of the first {window}",
            met,
            (
                f"emulator CPU/call {first_ms:.2f} ms over the first {window}, {last_ms:.2f} ms after {issued} "
                f"({(last_ms - first_ms) / first_ms:+.0%}); GetCallerIdentity signed by a session newer than them all "
                f"{caller_ms[0] or 0:.2f} -> {caller_ms[1] or 0:.2f} ms"
                if first_ms and last_ms
                else "not measured"
            ),
            servers=("aws",),
            first_ms=None if first_ms is None else round(first_ms, 2),
            last_ms=None if last_ms is None else round(last_ms, 2),
            caller_ms=[None if ms is None else round(ms, 2) for ms in caller_ms],
            sessions=issued,
        )


def time_startup(command: list[str], cwd: Path, folder: Path, env: dict | None = None, timeout: float = 60) -> dict:
    """One start of the demo (`command`, e.g. `./run demo`) on free ports in instance folder `folder`: seconds
    until it prints that it is up and the IdP's and portal's /healthz and the emulator then answer (None: it did
    not); the CPU of its whole process tree (children waited for) and the other load meanwhile."""
    from devstack.stack import free_addresses

    addresses = free_addresses()
    env = {k: v for k, v in (env or os.environ).items() if k not in ("IDP_CONFIG", "BROKER_CONFIG")}
    env.update(addresses, INSTANCE_DIR=str(folder), PYTHONUNBUFFERED="1")
    checks = [
        f"{addresses['IDP_URL']}/healthz",
        f"{addresses['PORTAL_URL'].replace('localhost', '127.0.0.1')}/healthz",
        f"{addresses['AWS_URL']}/moto-api/",
    ]
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before, own_before = machine_busy_seconds(), time.process_time()
    began = time.monotonic()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
    )
    up = threading.Event()

    def watch() -> None:
        for line in process.stdout:
            if b"The demo is up" in line:
                up.set()
        # the rest of the output is read and dropped until the process ends

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    took = None
    try:
        if up.wait(timeout) and process.poll() is None:
            took = time.monotonic() - began
            if not all(_answers(url) for url in checks):
                took = None
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        reader.join(5)
    wall = time.monotonic() - began
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (children_after.ru_utime + children_after.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
    busy = machine_busy_seconds() - busy_before
    other = max(0.0, (busy - cpu - (time.process_time() - own_before)) / wall) if wall else 0.0
    return {"seconds": took, "cpu_seconds": cpu, "wall": wall, "other_cores": other}


def _in_sts_call(frame: str) -> bool:
    """A py-spy frame inside the portal's STS call: a boto3 client's (botocore's `_make_api_call`), or the
    portal's own AssumeRoleWithSAML request built and signed with botocore's parts (`StsCredentialIssuer._call`)."""
    return ("_make_api_call (" in frame and "botocore/client.py" in frame) or (
        "_call (" in frame and "broker/aws/sts.py" in frame
    )


def _service(name: str) -> str:
    """A replica's service: idp-2 -> idp (its figures are summed with the other replicas')."""
    return name.rsplit("-", 1)[0] if name.rsplit("-", 1)[-1].isdigit() else name


def _by_service(values: dict) -> dict:
    summed: dict = {}
    for name, value in values.items():
        summed[_service(name)] = summed.get(_service(name), 0) + value
    return summed


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=0.5).status_code == 200
    except requests.RequestException:
        return False


# -- report -----------------------------------------------------------------------------------------


def _fmt(value, digits=1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def format_row_line(row: Row) -> str:
    return (
        f"[{row.scenario}] ops {row.ops}, {_fmt(row.throughput)}/s, p50/p95/p99 {_fmt(row.p50)}/"
        f"{_fmt(row.p95)}/{_fmt(row.p99)} ms, errors {row.errors}"
        + (f" ({row.unfinished} not run: time limit)" if row.unfinished else "")
        + f"; {row.result}"
        + (f"; errors: {row.error_samples}" if row.error_samples else "")
    )


def format_request_cpu(row: Row, least: float = 0.05) -> str:
    """Where the own services' CPU went, per operation: their request threads by endpoint, largest first (the
    rest of a service's CPU is the HTTP server's own threads, and its password hashes on the IdP); "" when no
    endpoint spent `least` ms per operation."""
    parts = [
        f"{name} {key} {ms:.2f}"
        for name, spent in row.request_cpu_ms.items()
        for key, ms in spent.items()
        if ms >= least
    ]
    parts.sort(key=lambda part: -float(part.rsplit(" ", 1)[1]))
    return ("request threads, CPU ms/op: " + ", ".join(parts)) if parts else ""


def table(rows: list[Row]) -> str:
    head = [
        "scenario",
        "ops",
        "per s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "peak RSS MB (sum per server)",
        "CPU ms/op",
        "other load (cores)",
        "argon2id ms (start/after)",
        "target",
        "met",
        "result",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        rss = ", ".join(f"{k} {v:.0f}" for k, v in row.rss_peak_mb.items()) or "-"
        cpu = ", ".join(f"{k} {v:.1f}" for k, v in row.cpu_ms_per_op.items()) or "-"
        met = row.status or figures.status(row.met, row.drift)
        argon2 = f"{_fmt(row.argon2_ms)}/{_fmt(row.argon2_ms_after)}"
        errors = str(row.errors) + (f" ({row.unfinished} not run: time limit)" if row.unfinished else "")
        if row.scenario.startswith("5"):  # start-up: one timing, in seconds
            timings = [str(row.ops), "-", _fmt(row.p50 and row.p50 / 1000, 2) + " s", "-", "-"]
        else:
            timings = [str(row.ops), _fmt(row.throughput), _fmt(row.p50), _fmt(row.p95), _fmt(row.p99)]
        other = _fmt(row.other_cores, 2)
        cells = [row.scenario, *timings, errors, rss, cpu, other, argon2, row.target, met, row.result]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_and_boot() -> dict:
    """The processor as the kernel names it (x86 kernels do), and this boot's id: runs on different boots may be on
    different (virtual) machines, so only paired rounds, on one boot, compare code (docs/benchmarks.md)."""
    found: dict = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            key = {"model name": "cpu_model", "cpu MHz": "cpu_mhz", "cache size": "cpu_cache"}.get(name.strip())
            if key and key not in found:
                found[key] = value.strip()
        found["boot_id"] = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        pass
    return found


def to_json(rows: list[Row], config: Config, calibration: dict | None = None, commit: dict | None = None) -> dict:
    return {
        "commit": commit or {},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            **cpu_and_boot(),
            **(calibration or {}),
        },
        "settings": {
            "concurrency": config.concurrency,
            "load_processes": config.processes,
            "workers": config.workers,
            "users": config.users,
            "groups": config.groups,
            "replicas": config.replicas,
            "scenarios": list(config.scenarios),
            "counts": {
                "oidc": config.logins_oidc,
                "saml": config.logins_saml,
                "reissue": config.reissues,
                "idp": config.idp_flows,
                "startup": config.startup_runs,
                "sessions": [config.sessions_window, config.sessions_fill],
                "warmup": config.warmup,
            },
            "drift_thresholds": {
                "other_cores": figures.DRIFT_OTHER_CORES,
                "argon2_change": figures.DRIFT_CALIBRATION,
            },
        },
        "rows": [row.__dict__ for row in rows],
    }
