"""A tiny run of the benchmark harness (`python -m bench --quick`): every scenario runs end to end
against the real stack, from separate load processes, and nothing fails. The figures themselves are
not checked here (tiny counts on a shared machine say nothing); `./run bench` measures."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = {
    "1 login OIDC",
    "2 login SAML",
    "3 credentials again",
    "3 STS alone",
    "3 credentials again: API",
    "4 IdP, session: ours",
    "5 start-up",
    "6 soak",
    "7 storm",
    "8 slow clients",
}


def test_quick_benchmark_runs_every_scenario_without_errors(tmp_path):
    report = tmp_path / "bench.json"
    began = time.monotonic()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--soak",
            "--json",
            str(report),
            "--instance-dir",
            str(tmp_path / "instance"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    took = time.monotonic() - began
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    rows = json.loads(report.read_text())["rows"]
    names = {row["scenario"] for row in rows}
    assert SCENARIOS <= names, f"missing: {SCENARIOS - names}"
    for row in rows:
        assert row["errors"] == 0 and row["unfinished"] == 0, (row["scenario"], row["error_samples"])
        assert row["ops"] > 0, row["scenario"]
    assert "| 1 login OIDC |" in run.stdout  # the printed table
    print(f"quick benchmark: {took:.0f} s")
