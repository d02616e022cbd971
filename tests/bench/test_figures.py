"""The benchmark's arithmetic (bench/figures.py, bench/results.py): the ceiling, CPU outside the hash, when a
row is drifting, and the paired rounds' differences."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import figures
from bench.results import results_path


def test_the_ceiling_is_two_cores_over_the_cpu_per_login():
    assert figures.ceiling(40.0) == 50.0
    assert figures.ceiling(47.6) == pytest.approx(42.0, abs=0.05)
    assert figures.ceiling(0.0) is None


def test_cpu_outside_the_hash_takes_the_calibration_off_per_hash_and_service():
    cpu = {"idp": 25.0, "broker": 6.5, "aws": 4.7, "client": 3.0}
    outside = figures.outside_hash(cpu, 20.0)
    assert outside == {"idp": 5.0, "broker": 6.5, "own": 11.5}  # the emulator and the client are not own services
    assert figures.outside_hash(cpu, 20.0, {"idp": 0}) == {"idp": 25.0, "broker": 6.5, "own": 31.5}
    assert figures.outside_hash({"idp": 15.0}, 20.0) == {"idp": 0.0, "own": 0.0}  # never below zero
    assert figures.outside_hash({"aws": 3.0}, 20.0) == {}


def test_a_steady_machine_is_judged_a_drifting_one_is_not():
    assert figures.drift(0.05, 20.0, 21.0) == []
    assert figures.status(True, []) == "yes" and figures.status(False, []) == "NO"
    assert figures.status(None, ["anything"]) == ""

    loaded = figures.drift(0.35, 20.0, 20.5)
    assert loaded == ["other load 0.35 cores > 0.1"]
    assert figures.status(True, loaded) == "drifting" and figures.status(False, loaded) == "drifting"

    slower = figures.drift(0.0, 20.0, 22.4)  # +12%
    assert len(slower) == 1 and "+12%" in slower[0]
    assert figures.drift(0.0, 20.0, 17.9) != []  # faster by more than 10% is drift as well
    assert figures.drift(0.1, 20.0, 22.0) == []  # the limits themselves are steady
    assert figures.drift(None, None, 30.0) == []  # nothing measured: nothing to say


def test_flat_means_within_ten_percent_above_the_first():
    assert figures.flat(4.7, 5.17)
    assert not figures.flat(4.7, 5.2)
    assert figures.flat(4.7, 3.0)


def test_paired_rounds_give_the_median_difference_and_its_range():
    rounds = [
        {"a": {"total ms": 60.0, "idp ms": 33.0}, "b": {"total ms": 58.0, "idp ms": 31.0}},
        {"a": {"total ms": 70.0, "idp ms": 38.0}, "b": {"total ms": 67.5, "idp ms": 36.0}},  # a busier round
        {"a": {"total ms": 62.0, "idp ms": 34.0}, "b": {"total ms": 61.0, "idp ms": 34.5}},
    ]
    summary = figures.paired(rounds)
    total = summary["total ms"]
    assert total["rounds"] == 3
    assert total["a"] == 62.0 and total["b"] == 61.0  # medians of each side
    assert total["difference"] == -2.0  # median of -2, -2.5, -1: not the difference of the medians (-1)
    assert (total["low"], total["high"]) == (-2.5, -1.0)
    assert total["consistent"] is True
    assert total["relative"] == pytest.approx(-2.0 / 62.0, abs=1e-4)
    idp = summary["idp ms"]
    assert idp["difference"] == -2.0 and (idp["low"], idp["high"]) == (-2.0, 0.5)
    assert idp["consistent"] is False  # one round disagrees


def test_paired_rounds_skip_a_metric_missing_on_one_side():
    rounds = [
        {"a": {"x": 1.0, "y": 5.0}, "b": {"x": 2.0}},
        {"a": {"x": 1.0, "y": None}, "b": {"x": 3.0, "y": 4.0}},
    ]
    summary = figures.paired(rounds)
    assert summary["x"]["difference"] == 1.5 and summary["x"]["rounds"] == 2
    assert "y" not in summary


def test_paired_table_prints_each_metric_with_its_range():
    summary = {"oidc": figures.paired([{"a": {"total ms": 60.0}, "b": {"total ms": 57.0}}])}
    text = figures.paired_table(summary, "A: main", "B: this tree")
    assert "| oidc | total ms | 60.00 | 57.00 | -3.00 (-5.0%) | -3.00 .. -3.00 | 1 |" in text


def test_each_run_is_kept_under_its_date_and_commit():
    commit = {"short": "ff2ba38", "dirty": True}
    path = results_path(Path("bench/results"), commit, when=0.0, label="compare-main")
    assert path == Path("bench/results/19700101-000000-ff2ba38-dirty-compare-main.json")
    clean = results_path(Path("r"), {"short": "abc1234", "dirty": False}, when=0.0)
    assert clean.name == "19700101-000000-abc1234.json"
