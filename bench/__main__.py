"""`python -m bench` (or `./run bench`): the performance benchmark of the whole stack.

Starts the stack in production mode (granian, moto server, IAM enforcement on) on free local ports
with a generated directory, drives it over HTTP from separate load processes, prints a table
(throughput, latency percentiles, errors, peak RSS and CPU per server, target met or not).
Bounded: each load run stops after its operations or --max-seconds, whichever comes first.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.run import Bench, Config, table, to_json

ALL = ("startup", "oidc", "saml", "reissue", "idp", "storm", "slow", "soak")
DEFAULT = ALL[:-1]
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
    args = parser.parse_args(argv)

    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if args.soak and "soak" not in scenarios:
        scenarios.append("soak")
    unknown = set(scenarios) - set(ALL)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if args.replicas and set(scenarios) - REPLICATED:
        parser.error(f"with --replicas, the scenarios are {', '.join(sorted(REPLICATED))}")
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
        config.instance_dir.mkdir(parents=True, exist_ok=True)
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
        if args.json:
            Path(args.json).write_text(
                json.dumps(to_json(rows, config, bench.calibration), indent=2, default=str) + "\n"
            )
            print(f"\nJSON written to {args.json}")
    return 0 if all(row.errors == 0 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
