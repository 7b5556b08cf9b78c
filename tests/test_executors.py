"""The executor seam: an executor registered from this test module evaluates each unit in its own
child process; the scores equal the inline executor's, and every process keeps its own record."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from bench import results
from bench.config import RunConfig, parse_config
from bench.errors import UserError
from bench.executors import ExecutorEntry, executors, get_executor, register_executor
from bench.runner import run
from bench.worker import CellResult, RunJob, Worker, WorkUnit, evaluate_elsewhere

REPO = Path(__file__).resolve().parent.parent


class ProcessPerUnit:
    """Each unit in a fresh child process (spawned, so nothing is shared with the driver), two at a time."""

    name = "process-per-unit"

    def run(self, units: Sequence[WorkUnit], job: RunJob, here: Worker) -> list[CellResult]:
        with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(evaluate_elsewhere, unit, job, "child") for unit in units]
            return [result for future in futures for result in future.result()]


def config(model_dir: Path, output: Path) -> RunConfig:
    return parse_config(
        {
            "name": "pool",
            "models": [{"ref": str(model_dir), "device": "cpu", "backend": "hf"}, {"ref": str(model_dir), "device": "cpu", "backend": "hf", "batch_size": 1}],
            "tasks": ["mgsm_symbolic_bpb", "mgsm_symbolic_tax"],
            "languages": ["eng", "hau"],
            "limit": 3,
            "output": str(output),
        },
        "test",
    )


def scores(run_dir: Path) -> dict:
    """Every cell's scores with their intervals, by its folder (model, task, language)."""
    return {str(path.parent.relative_to(run_dir)): json.loads(path.read_text())["metrics"] for path in run_dir.glob("*/*/*/summary.json")}


def test_an_executor_from_a_test_module_runs_units_in_other_processes(tiny_model_dir: Path, tmp_path: Path) -> None:
    register_executor(ExecutorEntry("process-per-unit", __name__, "ProcessPerUnit"))
    assert "process-per-unit" in executors()
    inline = run(config(tiny_model_dir, tmp_path / "inline"))
    pooled = run(config(tiny_model_dir, tmp_path / "pooled"), executor=get_executor("process-per-unit"))
    assert pooled.computed_samples == inline.computed_samples == 2 * 2 * 2 * 3
    assert len(scores(pooled.run_dir)) == 8 and scores(pooled.run_dir) == scores(inline.run_dir)  # bit for bit: the same code on the same docs
    manifest = results.read_manifest(pooled.run_dir) or {}
    records = manifest["invocations"]
    assert sorted(record["role"] for record in records) == ["child", "child", "process-per-unit"]
    assert len({record["pid"] for record in records}) == 3 and {record["status"] for record in records} == {"finished"}
    assert len(manifest["models"]) == 2  # each child recorded the model it loaded
    again = run(config(tiny_model_dir, tmp_path / "pooled"), executor=get_executor("process-per-unit"))
    assert again.computed_samples == 0 and scores(again.run_dir) == scores(inline.run_dir)
    assert len((results.read_manifest(pooled.run_dir) or {})["invocations"]) == 6  # nothing overwritten


def test_unknown_and_uninstalled_executors_are_one_line_errors(tiny_model_dir: Path) -> None:
    with pytest.raises(UserError, match="unknown executor 'inlin' \\(did you mean 'inline'\\?\\); choose one of: inline"):
        get_executor("inlin")
    register_executor(ExecutorEntry("needs-extra", __name__, "ProcessPerUnit", requires=("no_such_module_for_accessbench",), extra="cluster"))
    with pytest.raises(
        UserError, match="executor needs-extra needs no_such_module_for_accessbench, which is not installed; install it with `python install.py cluster`"
    ):
        get_executor("needs-extra")
    cli = subprocess.run(
        [sys.executable, "-m", "bench", "run", "-m", str(tiny_model_dir), "-t", "mgsm_symbolic_tax", "-l", "eng", "--executor", "nowhere"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 2 and cli.stderr.strip().splitlines() == ["error: unknown executor 'nowhere'; choose one of: inline, ray"]
