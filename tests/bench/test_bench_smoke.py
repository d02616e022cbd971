"""A tiny run of the benchmark harness (`python -m bench --quick`): every scenario runs end to end
against the real stack, from separate load processes, and nothing fails; the run's JSON, kept under the results
folder with its commit, records the argon2id calibration and the other load of every row, and flags the rows
measured on a drifting machine. The figures themselves are not checked here (tiny counts on a shared machine say
nothing); `./run bench` measures."""

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
    "9 emulator sessions",
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
            "--results-dir",
            str(tmp_path / "results"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    took = time.monotonic() - began
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    data = json.loads(report.read_text())
    rows = data["rows"]
    names = {row["scenario"] for row in rows}
    assert SCENARIOS <= names, f"missing: {SCENARIOS - names}"
    for row in rows:
        assert row["errors"] == 0 and row["unfinished"] == 0, (row["scenario"], row["error_samples"])
        assert row["ops"] > 0, row["scenario"]
    assert "| 1 login OIDC |" in run.stdout  # the printed table

    # the run is kept with its commit, and every row with the calibration and the other load it was measured under
    kept = list((tmp_path / "results").glob("*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text()) == data
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert data["commit"]["sha"] == head and kept[0].name.removesuffix(".json").split("-")[2] == head[:7]
    assert isinstance(data["commit"]["dirty"], bool)
    assert data["machine"]["argon2_verify_ms"] > 0 and data["machine"]["argon2_verify_ms_end"] > 0
    assert data["machine"]["boot_id"]  # which machine (and, where the kernel names it, its cpu_model)
    for row in rows:
        assert row["argon2_ms"] == data["machine"]["argon2_verify_ms"] and row["argon2_ms_after"] > 0, row["scenario"]
        assert row["other_cores"] is not None and row["other_cores"] >= 0, row["scenario"]
        if row["met"] is None:
            assert row["status"] == "", row["scenario"]
        elif row["drift"]:  # a drifting machine: not called met, nor missed
            assert row["status"] == "drifting" and "drifting" in row["result"], row["scenario"]
        else:
            assert row["status"] == ("yes" if row["met"] else "NO"), row["scenario"]
    login = next(row for row in rows if row["scenario"] == "1 login OIDC")
    assert set(login["outside_hash_ms"]) == {"idp", "broker", "own"}
    assert "CPU outside the hash" in login["result"] and login["extra"]["ceiling"] > 0
    # where each service's CPU went, by endpoint, from the servers' own metrics
    spent = login["request_cpu_ms"]
    assert spent["broker"]["POST portal.credentials"] > 0 and spent["idp"]["POST oidc_api.token"] > 0, spent
    assert sum(spent["broker"].values()) <= login["cpu_ms_per_op"]["broker"] * 1.1, spent
    assert "request threads, CPU ms/op: " in run.stdout
    # the soak reads each process's private memory and each server's PSS beside its RSS
    last = next(row for row in rows if row["scenario"] == "6 soak")["extra"]["samples"][-1]
    for server in ("idp", "broker"):
        assert last["pss_total"][server] > 0, last
        assert all(0 < private <= rss for private, rss in zip(last["private"][server], last[server], strict=True)), last
    print(f"quick benchmark: {took:.0f} s")


def test_quick_lifecycle_benchmark_syncs_and_enforces_a_change(tmp_path):
    """`python -m bench.lifecycle --quick`: the full SCIM sync reaches both targets, and every disabled
    person is refused everywhere (the portal session, the sso API grant, their older AWS credentials)."""
    report = tmp_path / "lifecycle.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.lifecycle", "--quick", "--json", str(report)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    data = json.loads(report.read_text())
    assert set(data["full_sync"]["targets"]) == {"portal-oidc", "portal-saml"}
    assert data["change_to_enforcement"]["failures"] == 0
    for key in ("portal session", "sso API grant", "AWS credentials", "all three"):
        assert data["change_to_enforcement"][key]["count"] == data["change_to_enforcement"]["runs"] == 3


def test_store_benchmark_times_every_operation_of_each_backend(tmp_path):
    """`python -m bench.stores`: a row per backend (memory, SQLite), a CPU and a wall figure per operation."""
    run = subprocess.run(
        [sys.executable, "-m", "bench.stores", "--count", "200"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    rows = {line.split("|")[1].strip(): line for line in run.stdout.splitlines()[2:] if line.startswith("|")}
    assert set(rows) == {"memory", "sqlite"}
    for line in rows.values():
        cells = [cell.strip() for cell in line.strip("|").split("|")[1:]]
        assert len(cells) == 5 and all(float(cell.split(" (")[0]) > 0 for cell in cells), line
