"""Where each run's figures are kept: bench/results/<date>-<time>-<short commit>[-dirty].json, with the commit
they were measured at (bench/results/README.md)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.rstrip("\n") if done.returncode == 0 else None


def commit_info(repo: Path) -> dict:
    """The commit a tree is at and whether it has changes not committed (then the figures are of the tree, not
    of the commit). Read-only git commands."""
    sha = _git(repo, "rev-parse", "HEAD")
    porcelain = _git(repo, "status", "--porcelain", "--untracked-files=no")
    return {
        "sha": sha,
        "short": sha[:7] if sha else None,
        "branch": _git(repo, "rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": bool(porcelain) if porcelain is not None else None,
        "changed": porcelain.splitlines() if porcelain else [],
        "tree": str(repo),
    }


def results_path(folder: Path, commit: dict, when: float | None = None, label: str = "") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(when if when is not None else time.time()))
    parts = (stamp, commit.get("short") or "nocommit", "dirty" if commit.get("dirty") else "", label)
    name = "-".join(part for part in parts if part)
    return folder / f"{name}.json"


def save(data: dict, folder: Path = RESULTS, label: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = results_path(folder, data.get("commit") or {}, label=label)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path
