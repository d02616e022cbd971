"""The paired comparison's report (bench/paired.py): the differences, the targets on each side's medians, and
when the run's machine counts as drifting. Pure functions over a run's data; no stack is started."""

from __future__ import annotations

from bench import figures
from bench.paired import drifting, report, request_thread_metrics


def _run(other: float, calibration: list[float]) -> dict:
    rounds = [
        {
            "oidc": {
                "a": {
                    "total ms": 60.0 + i,
                    "2-core ceiling /s": 2000 / (60.0 + i),
                    "own outside the hash ms": 9.0,
                    "other load cores": other,
                },
                "b": {
                    "total ms": 57.0 + i,
                    "2-core ceiling /s": 2000 / (57.0 + i),
                    "own outside the hash ms": 7.5,
                    "other load cores": other,
                },
            }
        }
        for i in range(3)
    ]
    return {
        "compare": {"a": "main", "b": "this tree"},
        "commits": {"a": {"short": "aaaaaaa"}, "b": {"short": "bbbbbbb", "dirty": True}},
        "rounds": rounds,
        "summary": {"oidc": figures.paired(one["oidc"] for one in rounds)},
        "calibration_per_round_ms": calibration,
    }


def test_the_report_gives_the_paired_difference_and_the_targets_of_each_side():
    text = report(_run(0.05, [20.0, 20.5, 21.0]))
    assert "| oidc | total ms | 61.00 | 58.00 | -3.00 (-4.9%) | -3.00 .. -3.00 | 3 |" in text
    assert "| oidc own outside the hash ms <= 8 | 9.00 (not met) | 7.50 (met) |" in text
    assert "| oidc 2-core ceiling /s >= 50 | 32.79 (not met) | 34.48 (not met) |" in text
    assert "drifting" not in text


def test_a_busy_or_drifting_machine_is_said_so():
    assert not drifting(_run(0.05, [20.0, 21.0]))
    assert drifting(_run(0.6, [20.0, 21.0]))  # other load
    assert drifting(_run(0.0, [20.0, 23.0]))  # the calibration moved 15% over the rounds
    assert "indicative only, not judged" in report(_run(0.6, [20.0]))


def test_request_threads_are_summed_per_service_per_operation_when_the_tree_has_them():
    result = {"ok": 4, "request_cpu": {"broker": {"POST portal.credentials": 0.02, "GET portal.accounts": 0.004}}}
    assert request_thread_metrics(result) == {"broker request threads ms": 6.0}
    assert request_thread_metrics({"ok": 4, "request_cpu": {"idp": {}, "broker": {}}}) == {}  # an older tree
