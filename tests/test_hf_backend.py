"""The transformers backend on a tiny random-weight Llama built from a config (fast)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from bench.config import ModelConfig
from bench.errors import UserError
from bench.models.base import GenerationParams, GenerationRequest, LoglikelihoodRequest, split_pair, truncate_at_stop
from bench.models.hf import PACKED_CONTINUATION_TOKENS, HFBackend, length_bands

CONTEXTS = [
    ("Question: what is 2 + 2?\nAnswer:", " 4"),
    ("A longer context about a fog bank that rolls in from the ocean to cover a city.", " It takes ten minutes."),
    ("Wingu la mawingu linakuja kutoka baharini", " kufunika mji."),
    ("Short", " one"),
    ("Benny saw a shark ", "with remoras"),  # trailing space moves to the continuation
]


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path) -> HFBackend:
    return HFBackend(ModelConfig(ref=str(tiny_model_dir), device="cpu", dtype="float32"), batch_size=4)


def plain_forward_logprob(backend: HFBackend, context_ids: list[int], continuation_ids: list[int]) -> tuple[float, bool]:
    """Reference: one unpadded forward pass, log-softmax, sum of the continuation tokens' log-probs."""
    ids = torch.tensor([context_ids + continuation_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(backend.model(ids).logits[0].float(), dim=-1)
    positions = range(len(context_ids) - 1, len(context_ids) + len(continuation_ids) - 1)
    total = sum(float(logprobs[p, t]) for p, t in zip(positions, continuation_ids))
    greedy = all(int(logprobs[p].argmax()) == t for p, t in zip(positions, continuation_ids))
    return total, greedy


def assert_scores_match_plain_forward_passes(backend: HFBackend, pairs: list[tuple[str, str]]) -> None:
    """backend.loglikelihood on ``pairs`` (in one call) agrees with an unpadded forward pass per pair."""
    results = backend.loglikelihood([LoglikelihoodRequest(c, x) for c, x in pairs])
    for (context, continuation), result in zip(pairs, results):
        context_ids, continuation_ids = split_pair(backend._encode, backend.prefix_token_id, context, continuation)
        expected, greedy = plain_forward_logprob(backend, context_ids, continuation_ids)
        assert result.logprob == pytest.approx(expected, abs=1e-4)
        assert result.is_greedy == greedy
        assert result.continuation_tokens == len(continuation_ids)
        assert result.input_tokens == len(context_ids) + len(continuation_ids) - 1
        assert result.logprob < 0


def test_loglikelihood_equals_a_plain_forward_pass_in_padded_batches(backend: HFBackend) -> None:
    assert_scores_match_plain_forward_passes(backend, CONTEXTS)


def test_batch_size_does_not_change_scores(tiny_model_dir: Path, backend: HFBackend) -> None:
    single = HFBackend(ModelConfig(ref=str(tiny_model_dir), device="cpu", dtype="float32"), batch_size=1)
    requests = [LoglikelihoodRequest(c, x) for c, x in CONTEXTS]
    for one, many in zip(single.loglikelihood(requests), backend.loglikelihood(requests)):
        assert one.logprob == pytest.approx(many.logprob, abs=1e-4)


SHARED = [  # the choices of three multiple-choice items and one lone request
    ("Topics: science, travel, politics.\nText: A fog bank rolls in from the ocean to cover a city.\nTopic:", " science"),
    ("Topics: science, travel, politics.\nText: A fog bank rolls in from the ocean to cover a city.\nTopic:", " travel and tourism"),
    ("Topics: science, travel, politics.\nText: A fog bank rolls in from the ocean to cover a city.\nTopic:", " politics of the day, at length"),
    ("Swali: 2 + 2 ni ngapi?\nJibu:", " 4"),
    ("Swali: 2 + 2 ni ngapi?\nJibu:", " nne"),
    # longer than PACKED_CONTINUATION_TOKENS: runs on a copy of the context's cache after the packed pass
    ("Swali: 2 + 2 ni ngapi?\nJibu:", " nne, kwa sababu mbili pamoja na mbili ni sawa na nne, kama tulivyojifunza shuleni zamani sana"),
    ("A lone context", " with its only continuation"),
    ("Q:", " a"),  # one-token choices: their context's last logits score them all
    ("Q:", " b"),
]


@pytest.mark.parametrize("fixture", ["tiny_model_dir", "tiny_gemma3_dir"])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_choices_sharing_a_context_score_as_plain_forward_passes(fixture: str, batch_size: int, request: pytest.FixtureRequest) -> None:
    shared = HFBackend(ModelConfig(ref=str(request.getfixturevalue(fixture)), device="cpu", dtype="float32"), batch_size=batch_size)
    assert_scores_match_plain_forward_passes(shared, SHARED)


INSTRUCTION = "Topics: science/technology, travel, politics, sports, health, entertainment, geography.\nText: "
TEXTS = ["A fog bank rolls in from the ocean.", "The team won the final.", "Parliament passed the law late at night.", "Wash your hands often."]
CELL = [  # one cell's items: every context starts with the task's instruction
    *[(f"{INSTRUCTION}{text}\nTopic:", choice) for text in TEXTS for choice in (" science", " travel and tourism", " health")],
    *[(f"{INSTRUCTION}{text}", " and then it was over.") for text in TEXTS],  # lone requests, scored without a shared context
]


@pytest.mark.parametrize("fixture", ["tiny_model_dir", "tiny_gemma3_dir"])
def test_items_sharing_an_instruction_score_as_plain_forward_passes(fixture: str, request: pytest.FixtureRequest) -> None:
    assert_scores_match_plain_forward_passes(
        HFBackend(ModelConfig(ref=str(request.getfixturevalue(fixture)), device="cpu", dtype="float32"), batch_size=4), CELL
    )


def test_the_instruction_every_item_shares_runs_once_per_batch(backend: HFBackend) -> None:
    """A batch of four contexts runs their common prefix once, as one row, then only their own tokens; the next batch
    reuses that prefix's cache."""
    seen: list[tuple[int, ...]] = []
    backend._prefix_caches.clear()
    hook = backend.model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    try:
        backend.loglikelihood([LoglikelihoodRequest(c, x) for c, x in CELL[:12:3]])  # four items, one choice each: lone requests
        backend.loglikelihood([LoglikelihoodRequest(c, x) for c, x in CELL[1:12:3]])  # the next batch of the cell
    finally:
        hook.remove()
    instruction = len(backend._encode(INSTRUCTION.rstrip(), special=True))
    prefix_rows, prefix_length = seen[0]
    assert prefix_rows == 1 and instruction - 2 <= prefix_length <= instruction + 1  # the instruction, once (its last token may merge with the text)
    rows, own_length = seen[1]
    assert rows == 4 and len(seen) == 3
    assert seen[2][0] == 4  # the next batch reuses the instruction's kept cache: no second prefix pass
    longest = max(len(split_pair(backend._encode, backend.prefix_token_id, c, x)[0]) for c, x in CELL[:12:3])
    assert own_length < longest - prefix_length + 8  # only what follows the prefix (plus the continuation)


def test_length_bands_trade_padding_against_passes() -> None:
    lengths = [12, 10, 8, 7, 5, 4, 1]
    assert length_bands(lengths, pass_cost=0) == [slice(i, i + 1) for i in range(7)]  # free passes: no padding
    assert length_bands(lengths, pass_cost=1000) == [slice(0, 7)]  # costly passes: one band

    def cost(bands: list[slice]) -> int:
        return sum(len(lengths[band]) * lengths[band][0] + 6 for band in bands)

    every_cut_set = itertools.product([False, True], repeat=len(lengths) - 1)
    cheapest = min(
        cost([slice(a, b) for a, b in itertools.pairwise([0, *[i + 1 for i, cut in enumerate(cuts) if cut], len(lengths)])]) for cuts in every_cut_set
    )
    bands = length_bands(lengths, pass_cost=6)
    assert cost(bands) == cheapest == 73  # [12, 10] [8, 7] [5, 4, 1]
    assert [i for band in bands for i in range(band.start, band.stop)] == list(range(len(lengths)))
    assert length_bands([], pass_cost=6) == []


def test_a_long_choice_runs_after_the_packed_pass(backend: HFBackend) -> None:
    """The Swahili item's short choices ride in its context's row; the long one runs after, on the context's cache."""
    requests = [LoglikelihoodRequest(c, x) for c, x in SHARED if c.startswith("Swali")]
    pairs = [split_pair(backend._encode, backend.prefix_token_id, r.context, r.continuation) for r in requests]
    short = [len(continuation) - 1 for _, continuation in pairs if len(continuation) - 1 <= PACKED_CONTINUATION_TOKENS]
    [long] = [len(continuation) - 1 for _, continuation in pairs if len(continuation) - 1 > PACKED_CONTINUATION_TOKENS]
    seen: list[int] = []
    hook = backend.model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["input_ids"].numel()), with_kwargs=True)
    try:
        backend.loglikelihood(requests)
    finally:
        hook.remove()
    assert seen == [len(pairs[0][0]) + sum(short), long]


def test_a_shared_context_runs_once(backend: HFBackend) -> None:
    """The three choices of the first item cost one context, not three: the context and the short choices' own
    tokens in one pass, then only the long choices' own tokens."""
    seen: list[int] = []
    hook = backend.model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["input_ids"].numel()), with_kwargs=True)
    try:
        backend.loglikelihood([LoglikelihoodRequest(c, x) for c, x in SHARED[:3]])
    finally:
        hook.remove()
    pairs = [split_pair(backend._encode, backend.prefix_token_id, c, x) for c, x in SHARED[:3]]
    assert len({tuple(context) for context, _ in pairs}) == 1
    inputs = [len(continuation) - 1 for _, continuation in pairs]  # a choice's last token is only a target
    short = sum(n for n in inputs if n <= PACKED_CONTINUATION_TOKENS)
    assert seen[0] == len(pairs[0][0]) + short
    assert sum(seen[1:]) <= max(inputs) * sum(1 for n in inputs if n > PACKED_CONTINUATION_TOKENS)  # the long ones, padded to the longest


def test_trailing_space_of_context_moves_to_the_continuation(backend: HFBackend) -> None:
    context_ids, continuation_ids = split_pair(backend._encode, backend.prefix_token_id, "Benny saw a shark ", "with")
    assert backend.tokenizer.decode(continuation_ids).startswith(" ")
    assert backend.tokenizer.decode(context_ids + continuation_ids) == "Benny saw a shark with"


def test_rolling_loglikelihood_equals_scoring_the_text_after_the_prefix_token(backend: HFBackend) -> None:
    text = "Iwọ afẹfẹ kan bọ lati inu okun lati bo ilu kan."
    [rolling] = backend.loglikelihood_rolling([text])
    tokens = backend.count_tokens([text])[0]
    expected, _ = plain_forward_logprob(backend, [backend.prefix_token_id], backend._encode(text, special=False))
    assert rolling.logprob == pytest.approx(expected, abs=1e-4)
    assert rolling.input_tokens == tokens


def test_rolling_windows_cover_texts_longer_than_the_context(tiny_model_dir: Path) -> None:
    short = HFBackend(ModelConfig(ref=str(tiny_model_dir), device="cpu", dtype="float32", max_length=16), batch_size=4)
    text = " ".join(["A fog bank rolls in from the ocean to cover a city."] * 4)
    [result] = short.loglikelihood_rolling([text])
    tokens = short._encode(text, special=False)
    shifted = [short.prefix_token_id] + tokens
    expected = 0.0
    for start in range(0, len(tokens), 16):
        targets = tokens[start : start + 16]
        window = shifted[start : start + len(targets)]
        with torch.no_grad():
            logprobs = torch.log_softmax(short.model(torch.tensor([window])).logits[0].float(), dim=-1)
        expected += sum(float(logprobs[i, t]) for i, t in enumerate(targets))
    assert len(tokens) > 16
    assert result.logprob == pytest.approx(expected, abs=1e-3)


def test_greedy_generation_is_deterministic_and_counts_tokens(backend: HFBackend) -> None:
    params = GenerationParams(max_new_tokens=12)
    requests = [GenerationRequest("Question: 2 + 2 =", params), GenerationRequest("A much longer prompt that needs left padding in the batch:", params)]
    first = backend.generate(requests)
    second = backend.generate(list(reversed(requests)))
    assert [r.text for r in first] == [r.text for r in reversed(second)]
    for request, result in zip(requests, first):
        assert 1 <= result.output_tokens <= 12
        assert result.input_tokens == len(backend._prompt_ids(request.context, params))


def test_generation_in_a_batch_matches_generation_alone(backend: HFBackend) -> None:
    params = GenerationParams(max_new_tokens=8)
    prompts = ["Short", "A much longer prompt that needs plenty of left padding"]
    together = backend.generate([GenerationRequest(p, params) for p in prompts])
    alone = [backend.generate([GenerationRequest(p, params)])[0] for p in prompts]
    assert [r.text for r in together] == [r.text for r in alone]


def test_stop_strings_cut_the_output() -> None:
    assert truncate_at_stop("12 apples\n\nQuestion: next", ["\n\n", "Question:"]) == "12 apples"
    assert truncate_at_stop("no stop here", ["\n\n"]) == "no stop here"


def test_generation_honours_stop_strings(backend: HFBackend) -> None:
    free = backend.generate([GenerationRequest("Once upon a", GenerationParams(max_new_tokens=20))])[0].text
    assert len(free) >= 2
    stop = free[1:3]
    stopped = backend.generate([GenerationRequest("Once upon a", GenerationParams(max_new_tokens=20, stop=(stop,)))])[0]
    assert stop not in stopped.text
    assert free.startswith(stopped.text)


def test_count_tokens_adds_no_special_tokens(backend: HFBackend) -> None:
    assert backend.count_tokens(["", "abc"])[0] == 0
    assert backend.count_tokens(["hello world"]) == [len(backend.tokenizer("hello world", add_special_tokens=False)["input_ids"])]


def test_model_info_reports_what_was_loaded(backend: HFBackend) -> None:
    assert backend.info.dtype == "float32" and backend.info.device == "cpu"
    assert backend.info.parameters == backend.model.num_parameters() > 0


def test_a_model_too_big_for_ram_is_refused_before_loading(tmp_path: Path) -> None:
    """A 70B-parameter Llama config (no weights): the estimate alone refuses it."""
    from transformers import LlamaConfig

    LlamaConfig(
        hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8, vocab_size=128256
    ).save_pretrained(tmp_path)
    with pytest.raises(UserError) as error:
        HFBackend(ModelConfig(ref=str(tmp_path), device="cpu", dtype="float32"))
    message = str(error.value)
    assert "\n" not in message
    assert "needs about" in message and "GiB" in message and "of RAM is free" in message


def test_max_memory_limit_is_respected_and_a_smaller_dtype_is_suggested(tiny_model_dir: Path) -> None:
    parameters = HFBackend(ModelConfig(ref=str(tiny_model_dir), device="cpu", dtype="float32")).info.parameters
    fp32_need = int(parameters * 4 * 1.2 + 300 * 2**20)
    limit = f"{fp32_need - 1000}B"
    with pytest.raises(UserError, match="try --dtype bfloat16"):
        HFBackend(ModelConfig(ref=str(tiny_model_dir), device="cpu", max_memory={"cpu": limit}))


def test_quantisation_on_cpu_is_refused_with_the_alternative(tiny_model_dir: Path) -> None:
    with pytest.raises(UserError, match="GPU only.*--dtype bfloat16"):
        HFBackend(ModelConfig(ref=str(tiny_model_dir), device="cpu", quantization="4bit"))


def test_chat_template_required_but_missing_is_refused(tiny_model_dir: Path) -> None:
    with pytest.raises(UserError, match="has no chat template"):
        HFBackend(ModelConfig(ref=str(tiny_model_dir), device="cpu", chat_template=True))


def test_custom_code_needs_trust_remote_code(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "custom.CustomConfig", "AutoModelForCausalLM": "custom.CustomModel"}
    config["model_type"] = "custom-thing"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="trust_remote_code: true"):
        HFBackend(ModelConfig(ref=str(tmp_path), device="cpu", dtype="float32"))


def test_out_of_memory_halves_the_batch_and_keeps_the_scores(tiny_model_dir: Path) -> None:
    texts = ["Sannu da zuwa, yaya aiki?", "Habari ya asubuhi.", "The cat sat on the mat today.", "Ina son koyon Hausa sosai."]
    backend = HFBackend(ModelConfig(ref=str(tiny_model_dir), device="cpu", dtype="float32", backend="hf"), batch_size=4)
    expected = [result.logprob for result in backend.loglikelihood_rolling(texts)]
    forward, failed_batches = backend.model.forward, []

    def forward_out_of_memory_once(*args, **kwargs):
        rows = (kwargs.get("input_ids") if kwargs.get("input_ids") is not None else args[0]).shape[0]
        if not failed_batches and rows > 1:
            failed_batches.append(rows)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(*args, **kwargs)

    backend.model.forward = forward_out_of_memory_once
    again = [result.logprob for result in backend.loglikelihood_rolling(texts)]
    assert failed_batches == [4] and backend.batch_size == 2
    assert again == pytest.approx(expected, abs=1e-4)
