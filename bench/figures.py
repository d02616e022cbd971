"""The benchmark's arithmetic, kept apart from the processes that produce the numbers (unit-tested in
tests/bench/test_figures.py): the 2-core ceiling, CPU outside the password hash, when a row was measured on a
drifting machine, and the statistics of paired rounds (`python -m bench --compare REF`).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence

CEILING_CORES = 2  # the targets are judged on two cores: 2,000 / total CPU ms per login (issue 18)
HASHES_PER_LOGIN = {"idp": 1}  # argon2id verifications per password login, per service (one, at the IdP)
SERVICES = ("idp", "broker")  # the project's own services (the emulator and the load client are not)
DRIFT_OTHER_CORES = 0.1  # other load above this: the row's figures are not judged
DRIFT_CALIBRATION = 0.10  # argon2id calibration moving more than this between start and end: not judged either


def ceiling(total_cpu_ms: float, cores: int = CEILING_CORES) -> float | None:
    """Operations per second the machine could do at best: cores x 1,000 ms / CPU ms per operation."""
    return cores * 1000.0 / total_cpu_ms if total_cpu_ms > 0 else None


def outside_hash(
    cpu_ms: Mapping[str, float], argon2_ms: float | None, hashes: Mapping[str, int] = HASHES_PER_LOGIN
) -> dict[str, float]:
    """CPU ms per operation of each own service with the password hashes taken off (calibration x hashes per
    operation), never below zero; with "own" the sum over the project's services."""
    found = {
        name: max(0.0, cpu_ms[name] - (argon2_ms or 0.0) * hashes.get(name, 0)) for name in SERVICES if name in cpu_ms
    }
    if found:
        found["own"] = sum(found.values())
    return {name: round(value, 2) for name, value in found.items()}


def drift(
    other_cores: float | None,
    argon2_start: float | None,
    argon2_end: float | None,
    *,
    max_other: float = DRIFT_OTHER_CORES,
    max_change: float = DRIFT_CALIBRATION,
) -> list[str]:
    """Why a row's figures say little about the code (empty: a steady machine). Other load above `max_other`
    cores, or one argon2id verification costing more than `max_change` more (or less) CPU at the end than at
    the start: the same work cost another amount meanwhile."""
    reasons = []
    if other_cores is not None and other_cores > max_other:
        reasons.append(f"other load {other_cores:.2f} cores > {max_other}")
    if argon2_start and argon2_end:
        change = (argon2_end - argon2_start) / argon2_start
        if abs(change) > max_change:
            reasons.append(f"argon2id {argon2_start:.1f} -> {argon2_end:.1f} ms ({change:+.0%})")
    return reasons


def status(met: bool | None, reasons: Sequence[str]) -> str:
    """The "met" column: "yes" / "NO" on a steady machine, "drifting" otherwise; "" for rows without a target."""
    if met is None:
        return ""
    if reasons:
        return "drifting"
    return "yes" if met else "NO"


def flat(first: float, later: float, tolerance: float = 0.10) -> bool:
    """Whether `later` is within `tolerance` above `first` (cheaper is flat too)."""
    return later <= first * (1 + tolerance)


# -- paired rounds ---------------------------------------------------------------------------------------------


def paired(rounds: Iterable[Mapping[str, Mapping[str, float]]]) -> dict[str, dict]:
    """Per metric, over rounds {"a": {metric: value}, "b": {metric: value}}: the median of each side, and the
    median, least and greatest of the per-round differences b - a (a metric missing on either side in a round
    is left out of that round). Per-round differences cancel whatever drifts slower than a round."""
    values: dict[str, list[tuple[float, float]]] = {}
    for one in rounds:
        a, b = one["a"], one["b"]
        for metric in a:
            if metric in b and a[metric] is not None and b[metric] is not None:
                values.setdefault(metric, []).append((float(a[metric]), float(b[metric])))
    summary = {}
    for metric, pairs in values.items():
        differences = [b - a for a, b in pairs]
        median_a = statistics.median(a for a, _ in pairs)
        median_difference = statistics.median(differences)
        summary[metric] = {
            "rounds": len(pairs),
            "a": round(median_a, 3),
            "b": round(statistics.median(b for _, b in pairs), 3),
            "difference": round(median_difference, 3),
            "low": round(min(differences), 3),
            "high": round(max(differences), 3),
            "relative": round(median_difference / median_a, 4) if median_a else None,
            # every round agrees on the sign: the difference is not noise of a few rounds
            "consistent": all(d < 0 for d in differences) or all(d > 0 for d in differences),
        }
    return summary


def paired_table(summary: Mapping[str, Mapping[str, dict]], a_name: str, b_name: str) -> str:
    """Markdown: one line per scenario and metric, the two medians and the paired difference with its range."""
    head = ["scenario", "metric", a_name, b_name, "difference (median of rounds)", "range over rounds", "rounds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scenario, metrics in summary.items():
        for metric, s in metrics.items():
            relative = f" ({s['relative']:+.1%})" if s.get("relative") is not None else ""
            lines.append(
                f"| {scenario} | {metric} | {s['a']:.2f} | {s['b']:.2f} | {s['difference']:+.2f}{relative}"
                f"{'' if s['consistent'] else ' ~'} | {s['low']:+.2f} .. {s['high']:+.2f} | {s['rounds']} |"
            )
    return "\n".join(lines)
