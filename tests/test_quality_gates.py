"""The quality gates: ruff (lint and format) over the code, mypy over bench/. Both must be clean."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

PATHS = ["bench", "tests", "benchmarks", "install.py"]


@pytest.mark.parametrize("command", [["ruff", "check", *PATHS], ["ruff", "format", "--check", *PATHS], ["mypy"]], ids=["ruff-lint", "ruff-format", "mypy"])
def test_the_code_passes(command: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", *command], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
