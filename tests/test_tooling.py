"""The project's habits, kept by its tools: lint, format and type checks fail the suite like any test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)


def test_ruff_finds_nothing_to_lint():
    result = run(str(BIN / "ruff"), "check", "--no-cache", "--output-format", "concise", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_finds_nothing_to_format():
    result = run(str(BIN / "ruff"), "format", "--no-cache", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_no_type_errors():
    """Over the packages named in pyproject.toml ([tool.mypy] packages)."""
    result = run(str(BIN / "mypy"))
    assert result.returncode == 0, result.stdout + result.stderr
