"""Paired rounds: this tree against another commit, on the same machine at the same time
(`python -m bench --compare main`).

The other commit is checked out with `git worktree add` into a temporary folder (removed at the end); both
stacks are started at once, each from its own tree with the same virtual environment (bench/stackhost.py), on
their own free ports. Then short rounds alternate between them (A B, B A, A B, ...), each side doing the same
operations with the same load client: whatever drifts slower than a round (other people's work on the machine,
the CPU's clock, caches) hits both alike, and the per-round differences of CPU per operation cancel it. The
summary gives, per scenario and metric, the median of each side and the median of the per-round differences
b - a with their range (bench.figures.paired): a difference whose range keeps one sign is not noise.

A is the other commit (`--compare REF`), B this tree, as it is (with changes not committed: its commit then says
"dirty").
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import directory as gen
from bench import figures
from bench.monitor import Monitor, argon2_verify_ms
from bench.results import commit_info
from bench.run import PORTAL_CLIENT_SECRET, REPO, Bench, Config, cpu_and_boot, time_startup

HOST = Path(__file__).resolve().with_name("stackhost.py")
SCENARIOS = ("oidc", "saml", "reissue", "idp", "startup")
SIDES = ("a", "b")


def make_worktree(ref: str) -> Path:
    """A detached checkout of `ref` under the temporary folder (the only git command that writes: worktree)."""
    folder = Path(tempfile.mkdtemp(prefix=f"sso-bench-{re.sub(r'[^A-Za-z0-9_.-]', '_', ref)[:40]}-"))
    tree = folder / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--quiet", str(tree), ref],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return tree


def overlay_python(tree: Path, folder: Path) -> Path:
    """A Python for `tree`: a virtual environment without packages of its own whose path holds the tree first and
    then the project venv's site-packages (the same installed libraries). Its site-packages folder is only put on the
    path, not processed as a site folder, so the project's editable install (which maps the project's packages to
    the main checkout) is not loaded: every process started with this Python, or with a clean environment by the
    stack (the emulator is), imports the tree's own code."""
    venv = folder / "python"
    if not (venv / "bin" / "python").exists():
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True, timeout=120)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    shared = [path for path in sys.path if path.endswith("site-packages") and Path(path).is_dir()]
    (venv / "lib" / version / "site-packages" / "sso_bench_tree.pth").write_text(
        "\n".join([str(Path(tree).resolve()), *shared]) + "\n"
    )
    return venv / "bin" / "python"


def remove_worktree(tree: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True, timeout=120)
    shutil.rmtree(tree.parent, ignore_errors=True)


class Side:
    """One stack (one tree) and the Bench object that drives it."""

    def __init__(self, name: str, tree: Path, instance: Path, config: Config, log, python: Path):
        self.name, self.tree, self.instance, self.python = name, tree, instance, python
        self.config, self.log = config, log
        self.host: subprocess.Popen | None = None
        self.info: dict = {}
        self.bench = Bench(config, log=log)

    def start(self) -> None:
        spec = {
            "tree": str(self.tree),
            "instance_dir": str(self.instance),
            "users": self.config.users,
            "groups": self.config.groups,
            "workers": self.config.workers,
            "scim": self.config.scim,
            "env": self.config.server_env,
        }
        self.instance.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ("IDP_CONFIG", "BROKER_CONFIG")}
        self.host = subprocess.Popen(
            [str(self.python), str(HOST), json.dumps(spec)],
            cwd=self.tree,
            env={**env, "PYTHONPATH": str(self.tree)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(self.instance / "stackhost.log").open("ab"),
            text=True,
            start_new_session=True,
        )

    def wait_started(self, timeout: float = 600) -> None:
        found: list[dict] = []

        def read() -> None:
            for line in self.host.stdout:
                if line.startswith("{"):
                    found.append(json.loads(line))
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        if not found:
            log = (self.instance / "stackhost.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the stack of {self.tree} did not start:\n{log}")
        self.info = found[0]
        bench = self.bench
        bench.portal, bench.idp, bench.aws = (self.info["addresses"][k] for k in ("PORTAL_URL", "IDP_URL", "AWS_URL"))
        bench.users = self.info["users"]

    def watch(self, other: Side) -> None:
        """CPU of this side's processes under their own names, the other side's (idle meanwhile, but for its
        background work) under "other ...": counted as the benchmark's, not as other load."""
        pids = dict(self.info["pids"])
        pids.update({f"other {name}": pid for name, pid in other.info["pids"].items()})
        self.bench.monitor = Monitor(pids, interval=1.0)

    def stop(self) -> None:
        if self.bench.monitor:
            self.bench.monitor.stop()
        if self.host is not None and self.host.poll() is None:
            try:
                self.host.stdin.close()
                self.host.wait(60)
            except (OSError, subprocess.TimeoutExpired):
                self.host.kill()


def request_thread_metrics(result: dict) -> dict:
    """Each own service's request threads, CPU ms/op summed over its endpoints (its metrics: exact thread CPU,
    not /proc's 10 ms ticks, so a difference of a tenth of a millisecond shows); none for a tree without them."""
    ok = max(1, result["ok"])
    return {
        f"{name} request threads ms": sum(spent.values()) * 1000 / ok
        for name, spent in result.get("request_cpu", {}).items()
        if spent
    }


def login_metrics(result: dict, argon2_ms: float | None) -> dict:
    ok = result["ok"]
    if not ok:
        return {"errors": result["error_count"]}
    cpu = {name: result["cpu"].get(name, 0.0) * 1000 / ok for name in ("idp", "broker", "aws")}
    cpu["client"] = result.get("client_cpu_ms_per_op", 0.0)
    total = sum(cpu.values())
    outside = figures.outside_hash(cpu, argon2_ms)
    return {
        **{f"{name} ms": value for name, value in cpu.items()},
        "total ms": total,
        "own outside the hash ms": outside.get("own"),
        "2-core ceiling /s": figures.ceiling(total),
        **request_thread_metrics(result),
        "errors": result["error_count"],
        "other load cores": result.get("other_cores"),
    }


class Paired:
    def __init__(self, config: Config, ref: str, rounds: int, log=print):
        self.config, self.ref, self.rounds, self.log = config, ref, rounds, log
        self.sides: dict[str, Side] = {}
        self.worktree: Path | None = None
        self.results: list[dict] = []  # one per round: {scenario: {"a": metrics, "b": metrics}}
        self.trees: dict[str, Path] = {}
        self.pythons: dict[str, Path] = {}
        self.calibration: list[float] = []

    def run(self) -> dict:
        scenarios = [s for s in SCENARIOS if s in self.config.scenarios]
        began = time.monotonic()
        self.worktree = make_worktree(self.ref)
        self.trees = {"a": self.worktree, "b": REPO}
        self.pythons = {side: overlay_python(tree, self.worktree.parent / side) for side, tree in self.trees.items()}
        commits = {"a": commit_info(self.worktree), "b": commit_info(REPO)}
        self.log(
            f"A = {self.ref} ({commits['a']['short']}, worktree {self.worktree}); "
            f"B = this tree ({commits['b']['short']}{', dirty' if commits['b']['dirty'] else ''})"
        )
        try:
            if set(scenarios) - {"startup"}:
                self.start_stacks()
            for index in range(self.rounds):
                order = SIDES if index % 2 == 0 else SIDES[::-1]
                self.calibration.append(round(argon2_verify_ms(self.config.calibration_seconds), 1))
                one: dict = {}
                for scenario in scenarios:
                    one[scenario] = {side: self.measure(scenario, side, index) for side in order}
                self.results.append(one)
                self.log(f"round {index + 1} of {self.rounds} ({''.join(order).upper()}): " + self.round_line(one))
        finally:
            for side in self.sides.values():
                side.stop()
            remove_worktree(self.worktree)
        summary = {
            scenario: figures.paired(one[scenario] for one in self.results if scenario in one) for scenario in scenarios
        }
        return {
            "compare": {"a": self.ref, "b": "this tree"},
            "commit": commits["b"],
            "commits": commits,
            "machine": {"cpus": os.cpu_count(), **cpu_and_boot()},
            "rounds": self.results,
            "summary": summary,
            "calibration_per_round_ms": self.calibration,
            "seconds": round(time.monotonic() - began),
        }

    def start_stacks(self) -> None:
        scratch = self.config.instance_dir
        for name in SIDES:
            side = Side(name, self.trees[name], scratch / f"stack-{name}", self.config, self.log, self.pythons[name])
            side.start()
            self.sides[name] = side
        for side in self.sides.values():
            side.wait_started()
        a, b = self.sides["a"], self.sides["b"]
        a.watch(b)
        b.watch(a)
        self.log(f"both stacks up: A portal {a.bench.portal}, B portal {b.bench.portal}")
        for side in self.sides.values():
            side.bench.warm_up()

    def users(self, side: str, scenario: str, index: int, n: int) -> list[str]:
        """Distinct people per round and scenario, the same on both sides."""
        users = self.sides[side].bench.users
        reserved = self.config.warmup + 2 * self.config.concurrency  # warm-up and the IdP flow's people
        pool = users[: len(users) - reserved]
        offset = {"oidc": 0, "saml": 1}[scenario] * self.rounds * n + index * n
        return [pool[(offset + i) % len(pool)] for i in range(n)]

    def measure(self, scenario: str, side: str, index: int) -> dict:
        config = self.config
        if scenario == "startup":
            folder = config.instance_dir / f"startup-{side}"
            tree = self.trees[side]
            env = {**os.environ, "PYTHONPATH": str(tree)}
            run = time_startup([str(self.pythons[side]), "-m", "devstack.stack"], tree, folder, env=env)
            return {
                "seconds": run["seconds"],
                "cpu s": run["cpu_seconds"],
                "errors": int(run["seconds"] is None),
                "other load cores": run["other_cores"],
            }
        bench = self.sides[side].bench
        argon2 = self.calibration[-1] if self.calibration else None
        if scenario in ("oidc", "saml"):
            n = config.logins_oidc if scenario == "oidc" else config.logins_saml
            result = bench.drive(
                "PortalLogin",
                {"portal": bench.portal, "password": gen.GENERATED_PASSWORD, "upstream": f"example-corp-{scenario}"},
                self.users(side, scenario, index, n),
            )
            return login_metrics(result, argon2)
        if scenario == "reissue":
            result = bench.drive("Reissue", bench._reissue_params(), list(range(config.reissues)))
            ok = max(1, result["ok"])
            cpu = {f"{name} ms": result["cpu"].get(name, 0.0) * 1000 / ok for name in ("broker", "aws")}
            return {
                **cpu,
                "client ms": result.get("client_cpu_ms_per_op", 0.0),
                **request_thread_metrics(result),
                "errors": result["error_count"],
                "other load cores": result.get("other_cores"),
            }
        # idp: authorize + code exchange with a session
        c = config.concurrency
        result = bench.drive(
            "IdPCodeFlow",
            {
                "authorize_url": f"{bench.idp}/oidc/authorize",
                "token_url": f"{bench.idp}/oidc/token",
                "client_id": "access-portal",
                "client_secret": PORTAL_CLIENT_SECRET,
                "redirect_uri": f"{bench.portal}/login/example-corp-oidc/callback",
                "scope": "openid email profile groups",
                "login": "form",
                "usernames": bench.users[-config.warmup - c : -config.warmup],
                "password": gen.GENERATED_PASSWORD,
            },
            list(range(config.idp_flows)),
        )
        return {
            "idp ms": result["cpu"].get("idp", 0.0) * 1000 / max(1, result["ok"]),
            "client ms": result.get("client_cpu_ms_per_op", 0.0),
            **request_thread_metrics(result),
            "errors": result["error_count"],
            "other load cores": result.get("other_cores"),
        }

    @staticmethod
    def round_line(one: dict) -> str:
        parts = []
        for scenario, sides in one.items():
            key = {"oidc": "total ms", "saml": "total ms", "reissue": "broker ms", "idp": "idp ms"}.get(
                scenario, "seconds"
            )
            a, b = sides["a"].get(key), sides["b"].get(key)
            if a is not None and b is not None:
                parts.append(f"{scenario} {key} A {a:.2f} B {b:.2f} ({b - a:+.2f})")
        return "; ".join(parts)


def other_loads(data: dict) -> list[float]:
    """The other load (cores) of every measured run of every round and side."""
    return [
        value
        for one in data["rounds"]
        for sides in one.values()
        for metrics in sides.values()
        if (value := metrics.get("other load cores")) is not None
    ]


def report(data: dict) -> str:
    a = f"A: {data['compare']['a']} ({data['commits']['a']['short']})"
    commit_b = data["commits"]["b"]
    b = f"B: this tree ({commit_b['short']}{', dirty' if commit_b['dirty'] else ''})"
    calibration = data["calibration_per_round_ms"]
    others = other_loads(data)
    lines = [
        f"Paired rounds, {len(data['rounds'])} rounds, A and B alternating (difference = B - A, per round; '~': the "
        "rounds do not all agree on its sign):",
        "",
        figures.paired_table(data["summary"], a, b),
        "",
        f"argon2id calibration per round: {min(calibration, default=0):.1f}-{max(calibration, default=0):.1f} ms; "
        f"other load during the measured runs: median {sorted(others)[len(others) // 2] if others else 0:.2f}, "
        f"max {max(others, default=0):.2f} cores",
        "",
        "The targets (issue 18) on each side's medians"
        + (" (a drifting machine: indicative only, not judged)" if drifting(data) else "")
        + ":",
        "",
        targets_table(data["summary"], a, b),
    ]
    return "\n".join(lines)


TARGETS = (  # scenario, metric, at most / at least, limit
    ("oidc", "2-core ceiling /s", ">=", 50.0),
    ("oidc", "own outside the hash ms", "<=", 8.0),
    ("saml", "2-core ceiling /s", ">=", 42.0),
    ("saml", "own outside the hash ms", "<=", 12.0),
    ("startup", "seconds", "<=", 1.5),
)


def drifting(data: dict) -> bool:
    """Whether the paired run's machine was drifting (other load above the limit in most measured runs, or the
    calibration moving more than 10% over the rounds): its absolute figures are then not judged, the differences
    still are."""
    others = other_loads(data)
    calibration = data["calibration_per_round_ms"]
    busy = bool(others) and sorted(others)[len(others) // 2] > figures.DRIFT_OTHER_CORES
    return busy or bool(calibration and figures.drift(None, min(calibration), max(calibration)))


def targets_table(summary: dict, a_name: str, b_name: str) -> str:
    lines = [f"| target | {a_name} | {b_name} |", "|---|---|---|"]
    for scenario, metric, sense, limit in TARGETS:
        found = summary.get(scenario, {}).get(metric)
        if found is None:
            continue

        cells = [
            f"{value:.2f} ({'met' if (value >= limit if sense == '>=' else value <= limit) else 'not met'})"
            for value in (found["a"], found["b"])
        ]
        lines.append(f"| {scenario} {metric} {sense} {limit:g} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)
