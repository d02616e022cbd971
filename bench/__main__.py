"""`python -m bench` (or `./run bench`): the performance benchmark of the whole stack.

Starts the stack in production mode (granian, moto server, IAM enforcement on) on free local ports
with a generated directory, drives it over HTTP from separate load processes, prints a table
(throughput, latency percentiles, errors, peak RSS and CPU per server, target met or not).
Bounded: each load run stops after its operations or --max-seconds, whichever comes first.

Every row records the argon2id calibration (one verification's CPU ms, timed at the start and again after the
row) and the other load (cores used meanwhile by processes outside the stack and the load clients); a row
measured on a drifting machine (other load above 0.1 core, or the calibration moving more than 10%) is marked
"drifting" instead of met. Each run's JSON, with the commit it measured, goes to bench/results/.

--compare REF: paired rounds of this tree against REF (a git worktree in a temporary folder), both stacks up at
once, alternating short rounds; prints the per-metric differences with their range (bench/paired.py). The counts
(--oidc-logins and so on) are then per round and side.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.results import RESULTS, commit_info, save
from bench.run import REPO, Bench, Config, table, to_json

ALL = ("startup", "oidc", "saml", "reissue", "idp", "sessions", "storm", "slow", "soak")
DEFAULT = ALL[:-1]
COMPARED = ("oidc", "saml", "reissue", "idp", "startup")  # what --compare measures in paired rounds
COUNTS = {  # option: (Config field, default in --compare mode, per round and side)
    "oidc_logins": ("logins_oidc", 40),
    "saml_logins": ("logins_saml", 30),
    "reissues": ("reissues", 100),
    "idp_flows": ("idp_flows", 100),
    "startup_runs": ("startup_runs", None),
    "sessions_fill": ("sessions_fill", None),
    "sessions_window": ("sessions_window", None),
}
REPLICATED = {"oidc", "saml", "storm"}  # what --replicas measures: logins through the edge


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", metavar="PATH", help="also write the table (and raw figures) as JSON")
    parser.add_argument(
        "--scenarios",
        default=",".join(DEFAULT),
        help=f"comma-separated, from: {', '.join(ALL)} (default: all but soak)",
    )
    parser.add_argument("--soak", action="store_true", help="add the soak: 10,000 logins, RSS after each 1,000")
    parser.add_argument("--soak-logins", type=int, default=10000)
    parser.add_argument("--quick", action="store_true", help="tiny counts (the smoke test): seconds, not minutes")
    parser.add_argument("--users", type=int, default=5000, help="generated employees (default 5000)")
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per service (default 2)")
    parser.add_argument(
        "--replicas",
        type=int,
        default=0,
        help="N replicas of the IdP and of the portal behind nginx, with Redis and PostgreSQL (devstack/replicas.py;"
        " --workers is then per replica); default 0: one of each on SQLite, as the demo runs",
    )
    parser.add_argument(
        "--no-scim",
        action="store_true",
        help="people enter the portal's directory when they sign in, not through the IdP's SCIM push (compare "
        "stores and replicas without the push's own cost)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the servers, e.g. WEB_THREADS=4 (repeatable)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=300.0,
        help="time limit of each load run (operations not started by then are reported as not run)",
    )
    parser.add_argument(
        "--instance-dir",
        type=Path,
        help="where the generated directory, state and logs go (default: a temporary folder)",
    )
    for option, (name, _) in COUNTS.items():
        parser.add_argument(
            "--" + option.replace("_", "-"), type=int, help=f"count for {name} (default: Config's, or --quick's)"
        )
    parser.add_argument(
        "--compare",
        metavar="REF",
        help="paired rounds: this tree against REF (e.g. main), both stacks at once, alternating rounds",
    )
    parser.add_argument("--rounds", type=int, default=8, help="rounds of --compare (default 8)")
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS,
        help="where each run's JSON is kept with its commit (default bench/results)",
    )
    parser.add_argument("--no-save", action="store_true", help="do not keep this run's JSON in --results-dir")
    args = parser.parse_args(argv)

    if args.compare and args.scenarios == ",".join(DEFAULT):
        args.scenarios = ",".join(COMPARED)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if args.soak and "soak" not in scenarios:
        scenarios.append("soak")
    unknown = set(scenarios) - set(ALL)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if args.replicas and set(scenarios) - REPLICATED:
        parser.error(f"with --replicas, the scenarios are {', '.join(sorted(REPLICATED))}")
    if args.compare and (set(scenarios) - set(COMPARED) or args.replicas):
        parser.error(f"with --compare, the scenarios are {', '.join(COMPARED)} (and no --replicas)")
    with tempfile.TemporaryDirectory(prefix="sso-bench-") as scratch:
        config = Config(
            instance_dir=(args.instance_dir or Path(scratch)).resolve(),
            users=args.users,
            groups=args.groups,
            concurrency=args.concurrency,
            workers=args.workers,
            max_seconds=args.max_seconds,
            scenarios=tuple(scenarios),
            soak_logins=args.soak_logins if "soak" in scenarios else 0,
            server_env=dict(item.split("=", 1) for item in args.env),
            replicas=args.replicas,
            scim=not args.no_scim,
        )
        if args.quick:
            config.users = min(config.users, 80)
            config.logins_oidc, config.logins_saml, config.reissues, config.idp_flows = 16, 16, 40, 40
            config.startup_runs, config.warmup = 1, 16
            config.soak_logins = min(config.soak_logins, 40)
            config.sessions_fill, config.sessions_window = 60, 20
            config.calibration_seconds = 0.2
        if args.compare:
            if not args.quick:
                config.users = min(config.users, 1000)
            for name, per_round in COUNTS.values():
                if per_round is not None and not args.quick:
                    setattr(config, name, per_round)
        for option, (name, _) in COUNTS.items():
            if getattr(args, option) is not None:
                setattr(config, name, getattr(args, option))
        config.instance_dir.mkdir(parents=True, exist_ok=True)
        if args.compare:
            return compare(args, config)
        layout = (
            f"replica, {config.replicas} replicas of each service (Redis, PostgreSQL, nginx)"
            if config.replicas
            else "service (SQLite)"
        )
        began = time.monotonic()
        bench = Bench(config, log=lambda text: print(text, flush=True))
        rows = bench.run()
        print(
            f"\nBenchmark finished in {time.monotonic() - began:.0f} s "
            f"({config.concurrency} concurrent clients, {config.workers} workers per {layout}, "
            f"{config.users} generated users; one argon2id verification took "
            f"{bench.calibration.get('argon2_verify_ms')} ms of CPU at the start):\n"
        )
        print(table(rows))
        data = to_json(rows, config, bench.calibration, commit_info(REPO))
        data["command"] = ["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)]
        data["seconds"] = round(time.monotonic() - began)
        drifting = [row.scenario for row in rows if row.status == "drifting"]
        if drifting:
            print(f"\nDrifting machine during: {', '.join(drifting)} (not judged: see the result column)")
        if args.json:
            Path(args.json).write_text(json.dumps(data, indent=2, default=str) + "\n")
            print(f"\nJSON written to {args.json}")
        if not args.no_save:
            print(f"Kept as {save(data, args.results_dir)}")
    return 0 if all(row.errors == 0 for row in rows) else 1


def compare(args, config: Config) -> int:
    from bench.paired import Paired, drifting, report

    paired = Paired(config, args.compare, args.rounds, log=lambda text: print(text, flush=True))
    data = paired.run()
    data["command"] = ["python", "-m", "bench", *sys.argv[1:]]
    data["settings"] = {
        "concurrency": config.concurrency,
        "workers": config.workers,
        "users": config.users,
        "per_round": {
            "oidc": config.logins_oidc,
            "saml": config.logins_saml,
            "reissue": config.reissues,
            "idp": config.idp_flows,
            "startup": 1,
        },
    }
    data["drifting"] = drifting(data)  # the absolute figures then say little; the paired differences still do
    print("\n" + report(data))
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2, default=str) + "\n")
        print(f"\nJSON written to {args.json}")
    if not args.no_save:
        print(f"Kept as {save(data, args.results_dir, label='compare-' + args.compare.replace('/', '_'))}")
    errors = sum(m.get("errors", 0) or 0 for one in data["rounds"] for sides in one.values() for m in sides.values())
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
