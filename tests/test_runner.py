"""The runner end to end on the tiny random model: all three task kinds, resume, interruption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import results
from bench.config import RunConfig, parse_config
from bench.errors import UserError
from bench.models.hf import HFBackend
from bench.plan import make_plan
from bench.runner import RunInterrupted, run

TASKS = ["mgsm_symbolic", "mgsm_symbolic_bpb", "mgsm_symbolic_tax"]


def tiny_config(model_dir: Path, output: Path, **extra: object) -> RunConfig:
    data = {
        "name": "tiny",
        "models": [{"ref": str(model_dir), "device": "cpu"}],
        "tasks": TASKS,
        "languages": ["eng", "Hausa"],
        "limit": 4,
        "batch_size": 2,
        "generation": {"max_new_tokens": 6},
        "output": str(output),
        **extra,
    }
    return parse_config(data, "test")


def metric_values(summaries: list[dict]) -> dict:
    return {(s["task"], s["language"], name): m["value"] for s in summaries for name, m in s["metrics"].items()}


def test_a_full_run_writes_samples_summaries_and_manifest(tiny_model_dir: Path, tmp_path: Path) -> None:
    outcome = run(tiny_config(tiny_model_dir, tmp_path))
    assert outcome.computed_samples == 3 * 4 * 2
    assert len(outcome.summaries) == 6
    samples = results.load(outcome.run_dir)
    assert len(samples) == 24 and not samples.duplicated(["task", "language", "doc_id"]).any()
    by_task = {s["task"] + "/" + s["language"]: s for s in outcome.summaries}
    assert by_task["mgsm_symbolic_tax/eng"]["metrics"]["token_premium"]["value"] == pytest.approx(1.0)
    assert by_task["mgsm_symbolic_tax/hau"]["metrics"]["token_premium"]["value"] > 1.0
    assert by_task["mgsm_symbolic_bpb/hau"]["metrics"]["bits_per_byte"]["value"] > 0
    assert by_task["mgsm_symbolic/eng"]["tokens"]["output"] > 0
    for summary in outcome.summaries:
        assert summary["config_hash"] and summary["model_info"]["parameters"] > 0
        for metric in summary["metrics"].values():
            assert metric["ci_low"] is not None and metric["ci_low"] <= metric["value"] <= metric["ci_high"]
    manifest = json.dumps(results.read_manifest(outcome.run_dir), indent=2)
    for key in (
        '"config_hash"',
        '"seed"',
        '"transformers"',
        '"torch"',
        '"accelerate"',
        '"datasets"',
        '"accessbench"',
        '"cpu"',
        '"ram_gib"',
        '"started_at"',
        '"finished_at"',
        '"status": "finished"',
    ):
        assert key in manifest


def test_rerunning_the_same_config_computes_nothing_and_keeps_the_run_id(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(tiny_model_dir, tmp_path)
    first = run(config)
    loads = []

    def counting_factory(model, cfg):  # the model is not even loaded when nothing is left to do
        loads.append(model.ref)
        return HFBackend(model, 2, cfg.seed)

    again = run(tiny_config(tiny_model_dir, tmp_path), backend_factory=counting_factory)
    assert again.run_dir == first.run_dir and again.computed_samples == 0 and loads == []
    assert metric_values(again.summaries) == metric_values(first.summaries)


class InterruptAfter:
    """A backend wrapper that raises KeyboardInterrupt after a number of backend calls (a Ctrl-C)."""

    def __init__(self, calls: int) -> None:
        self.calls = calls

    def __call__(self, model, config):
        backend = HFBackend(model, config.batch_size_for(model), config.seed)
        budget = self

        class Interrupting:
            info = backend.info
            batch_size = backend.batch_size

            def __getattr__(self, name):
                method = getattr(backend, name)
                if name not in ("generate", "loglikelihood_rolling", "count_tokens"):
                    return method

                def call(*args, **kwargs):
                    if budget.calls == 0:
                        raise KeyboardInterrupt
                    budget.calls -= 1
                    return method(*args, **kwargs)

                return call

        return Interrupting()


def test_interrupted_run_keeps_finished_samples_and_resumes_to_the_same_summaries(tiny_model_dir: Path, tmp_path: Path) -> None:
    reference = run(tiny_config(tiny_model_dir, tmp_path / "reference"))
    config = tiny_config(tiny_model_dir, tmp_path / "interrupted")
    with pytest.raises(RunInterrupted, match="rerun the same command to resume") as interrupted:
        run(config, backend_factory=InterruptAfter(3))
    kept = results.load(interrupted.value.run_dir)
    assert 0 < len(kept) < 24
    manifest = json.dumps(results.read_manifest(interrupted.value.run_dir), indent=2)
    assert '"status": "interrupted"' in manifest and '"backend": "hf"' in manifest  # auto was resolved before the run id
    resumed = run(config)
    assert resumed.run_dir == interrupted.value.run_dir
    assert resumed.computed_samples == 24 - len(kept)
    samples = results.load(resumed.run_dir)
    assert len(samples) == 24 and not samples.duplicated(["task", "language", "doc_id"]).any()
    assert metric_values(resumed.summaries) == pytest.approx(metric_values(reference.summaries))
    for summary in resumed.summaries:  # the cost block is derived from the samples, so a resumed run has a whole one
        assert summary["cost"]["tokens"] == summary["tokens"] and summary["cost"]["n_samples"] == summary["n_samples"]


def test_plan_checks_everything_before_loading(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown task 'mgsm'"):
        make_plan(tiny_config(tiny_model_dir, tmp_path, tasks=["mgsm"]))
    with pytest.raises(UserError, match="has no Quechua"):
        make_plan(tiny_config(tiny_model_dir, tmp_path, languages=["Quechua"]))
    with pytest.raises(UserError, match="does not exist"):
        make_plan(tiny_config(tmp_path / "no-such-model", tmp_path))
