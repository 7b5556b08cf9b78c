"""Every task family end to end with the real SmolLM2-135M (from its PyPI package), two items per cell."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FIXTURE_DATA, REPO, assert_backend_ran

from bench.config import build_config, parse_config
from bench.runner import run

pytestmark = pytest.mark.integration
MIRRORED = ["sib200", "flores_eng_x", "flores_x_eng", "afrisenti", "afrimmlu", "afrixnli", "afrimgsm", "afriqa", "flores_bpb", "flores_tax"]


def assert_every_score_has_an_interval(summaries: list[dict]) -> None:
    for summary in summaries:
        assert summary["n_samples"] == 2 and summary["model_info"]["parameters"] > 100_000_000
        for name, score in summary["metrics"].items():
            assert score["value"] is not None, (summary["task"], name)
            assert score["ci_low"] <= score["value"] <= score["ci_high"], (summary["task"], name)


def test_every_mirrored_family_runs_offline_on_shared_data(smollm2_ref: str, real_backend: str, shared_data: Path, tmp_path: Path) -> None:
    config = parse_config(
        {
            "name": "suite",
            "models": [{"ref": smollm2_ref, "backend": real_backend}],
            "tasks": MIRRORED,
            "languages": ["Hausa"],
            "limit": 2,
            "generation": {"max_new_tokens": 8},
            "data_dir": str(shared_data),
            "output": str(tmp_path),
        },
        "test",
    )
    outcome = run(config)
    assert sorted(s["task"] for s in outcome.summaries) == sorted(MIRRORED)
    assert {s["language"] for s in outcome.summaries} == {"hau_Latn", "hau"}
    assert_every_score_has_an_interval(outcome.summaries)
    assert_backend_ran(outcome.summaries, real_backend)
    by_task = {s["task"]: s for s in outcome.summaries}
    assert 0 <= by_task["flores_eng_x"]["metrics"]["chrf_pp"]["value"] <= 100
    assert by_task["flores_tax"]["metrics"]["token_premium"]["value"] > 1  # Hausa costs more tokens than English


def test_belebele_and_global_mmlu_run_on_their_fixtures(smollm2_ref: str, real_backend: str, tmp_path: Path) -> None:
    config = parse_config(
        {
            "name": "fixtures",
            "models": [{"ref": smollm2_ref, "backend": real_backend}],
            "tasks": ["belebele", "global_mmlu"],
            "languages": ["eng"],
            "limit": 2,
            "data_dir": str(FIXTURE_DATA),
            "output": str(tmp_path),
        },
        "test",
    )
    outcome = run(config)
    assert {s["task"] for s in outcome.summaries} == {"belebele", "global_mmlu"}
    assert_every_score_has_an_interval(outcome.summaries)
    assert_backend_ran(outcome.summaries, real_backend)


def test_the_african_suite_config_is_valid_and_points_at_the_check() -> None:
    config = build_config(REPO / "configs" / "african_suite.yaml")
    assert config.tasks == MIRRORED and config.languages == ["hau", "swh", "yor", "amh"] and config.limit
