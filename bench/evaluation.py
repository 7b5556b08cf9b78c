"""Turning docs into backend requests, and backend answers into scored sample records."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any

from bench.config import GenerationConfig
from bench.cost.meter import Meter, Reading, split_reading
from bench.metrics import METRICS, CorpusMetric, aggregate, extract_number, normalise_text, parse_choice, text_stats, token_f1
from bench.models.base import Backend, GenerationParams, GenerationRequest, LoglikelihoodRequest
from bench.tasks import Doc, TaskSpec

SampleRecord = dict[str, Any]
# Multiple choice answered with a letter: room for "The answer is (B) travel", up to a blank line.
LETTER_PARAMS = GenerationParams(max_new_tokens=24, stop=("\n\n",))


def generation_params(spec: TaskSpec, defaults: GenerationConfig) -> GenerationParams:
    """Fields the user set in the run config win; then the task's own; then the global defaults."""
    chosen = defaults.model_fields_set
    max_new = defaults.max_new_tokens if "max_new_tokens" in chosen or spec.generation.max_new_tokens is None else spec.generation.max_new_tokens
    stop = defaults.stop if "stop" in chosen or spec.generation.stop is None else spec.generation.stop
    return GenerationParams(max_new_tokens=max_new, stop=tuple(stop), greedy=defaults.greedy, temperature=defaults.temperature, top_p=defaults.top_p)


def _score_generation(spec: TaskSpec, doc: Doc, output: str) -> dict[str, Any]:
    """Per-sample values for the task's metrics; corpus metrics keep the sentence's sacrebleu statistics."""
    target, values = doc.target or "", dict[str, Any]()
    for name in spec.metrics:
        metric = METRICS[name]
        if isinstance(metric, CorpusMetric):
            values[metric.column] = metric.sentence_stats(output.strip(), target.strip())
        elif name == "exact_match_number":
            predicted = extract_number(output)
            values[name] = float(predicted is not None and predicted == extract_number(target))
        elif name == "exact_match":
            values[name] = float(normalise_text(output) == normalise_text(target))
        elif name == "f1":
            values[name] = token_f1(output, target)
    return values


def _argmax(scores: Sequence[float]) -> int:
    return max(range(len(scores)), key=lambda i: scores[i])


def evaluate_docs(
    spec: TaskSpec,
    docs: Sequence[Doc],
    backend: Backend,
    params: GenerationParams,
    reference: Mapping[str, Doc] | None = None,
    meter: Meter | None = None,
) -> list[SampleRecord]:
    """Run one chunk of docs through the backend and score each.

    With a ``meter``, the backend calls are measured and each record gets a ``meter`` entry (its
    share of prefill and decode time, CPU time, energy and the call's peak memory); without one,
    wall time is shared evenly.
    """
    started = time.perf_counter()
    scoring = getattr(backend, "scoring", "loglikelihood")  # an endpoint without prompt log-probs answers with a letter
    records: list[SampleRecord] = []
    ttft: list[float | None] | None = None
    decode: list[float | None] | None = None
    with meter.measure() if meter is not None else nullcontext(Reading()) as reading:
        if spec.kind == "generate":
            answers = backend.generate([GenerationRequest(doc.prompt or "", params) for doc in docs])
        elif spec.kind == "multiple_choice" and scoring == "generative":  # asked for a letter, the answer parsed
            answers = backend.generate([GenerationRequest(doc.lettered_prompt or doc.prompt or "", LETTER_PARAMS) for doc in docs])
        elif spec.kind == "multiple_choice":  # every choice of every doc of the chunk in one backend call
            choice_results = backend.loglikelihood([LoglikelihoodRequest(doc.prompt or "", " " + choice) for doc in docs for choice in doc.choices])
        elif spec.kind == "rolling_loglikelihood":
            scored = backend.loglikelihood_rolling([doc.text or "" for doc in docs])
        else:  # tokenizer_stats: the model's own tokenizer on the text and on its parallel reference
            references = [reference.get(doc.id) if reference is not None else None for doc in docs]
            counts = backend.count_tokens([doc.text or "" for doc in docs])
            reference_counts = iter(backend.count_tokens([ref.text or "" for ref in references if ref is not None]))
    if spec.kind == "generate":
        ttft, decode = [answer.ttft_seconds for answer in answers], [answer.decode_seconds for answer in answers]
        for doc, answer in zip(docs, answers):
            records.append(_record(doc, doc.prompt, answer.text, _score_generation(spec, doc, answer.text), answer.input_tokens, answer.output_tokens))
    elif spec.kind == "multiple_choice" and scoring == "generative":
        ttft, decode = [answer.ttft_seconds for answer in answers], [answer.decode_seconds for answer in answers]
        for doc, answer in zip(docs, answers):
            parsed = parse_choice(answer.text, doc.choices)  # an answer naming no choice counts wrong; its text is kept
            letter = {"acc": float(parsed == doc.gold), "acc_norm_bytes": None, "gold": doc.gold, "predicted": parsed}
            record = _record(doc, doc.lettered_prompt, answer.text, letter, answer.input_tokens, answer.output_tokens)
            records.append({**record, "scoring": "generative"})
    elif spec.kind == "multiple_choice":
        choice_answers = iter(choice_results)
        for doc in docs:
            results = [next(choice_answers) for _ in doc.choices]
            logprobs = [result.logprob for result in results]
            per_byte = [lp / len((" " + choice).encode("utf-8")) for lp, choice in zip(logprobs, doc.choices)]
            predicted, predicted_norm = _argmax(logprobs), _argmax(per_byte)
            values: dict[str, Any] = {
                "acc": float(predicted == doc.gold),
                "acc_norm_bytes": float(predicted_norm == doc.gold),
                "gold": doc.gold,
                "predicted": predicted,
                "predicted_norm_bytes": predicted_norm,
                "choice_logprobs": [round(lp, 4) for lp in logprobs],
            }
            input_tokens = sum(result.input_tokens for result in results)
            records.append({**_record(doc, doc.prompt, doc.choices[predicted], values, input_tokens, 0), "scoring": "loglikelihood"})
    elif spec.kind == "rolling_loglikelihood":
        for doc, result in zip(docs, scored):
            values = {
                "neg_logprob": -result.logprob,
                "neg_log2_prob": -result.logprob / math.log(2),
                "tokens": result.input_tokens,
                **text_stats(doc.text or ""),
            }
            records.append(_record(doc, doc.text, None, values, result.input_tokens, 0))
    else:
        for doc, count, ref in zip(docs, counts, references):
            values = {"tokens": count, **text_stats(doc.text or ""), "reference_tokens": next(reference_counts) if ref is not None else None}
            records.append(_record(doc, doc.text, None, values, count, 0))
    if meter is None:
        share = (time.perf_counter() - started) / max(1, len(records))
        for record in records:
            record["seconds"] = share
        return records
    metered = split_reading(reading, [r["input_tokens"] for r in records], [r["output_tokens"] for r in records], ttft, decode)
    for record, measured in zip(records, metered):
        record["seconds"] = measured["prefill_s"] + measured["decode_s"]
        record["meter"] = measured
    return records


def _record(doc: Doc, shown_input: str | None, output: str | None, values: Mapping[str, Any], input_tokens: int, output_tokens: int) -> SampleRecord:
    return {
        "doc_id": doc.id,
        "input": shown_input,
        "target": doc.target,
        "output": output,
        "values": dict(values),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        **({"choices": list(doc.choices)} if doc.choices else {}),
    }


def summarize(spec: TaskSpec, samples: Sequence[SampleRecord], seed: int) -> dict[str, Any]:
    """Scores with 95 % intervals, token totals and time for one cell."""
    values = [sample["values"] for sample in samples]
    metrics = {}
    for name in spec.metrics:
        metric = METRICS[name]
        metrics[name] = {**aggregate(metric, values, seed), "higher_is_better": metric.higher_is_better, "description": metric.description}
    seconds = sum(sample.get("seconds", 0.0) for sample in samples)
    input_tokens = sum(sample["input_tokens"] for sample in samples)
    output_tokens = sum(sample["output_tokens"] for sample in samples)
    scorings = sorted({sample.get("scoring", "loglikelihood") for sample in samples}) if spec.kind == "multiple_choice" else []
    return {
        "n_samples": len(samples),
        **({"scoring": scorings[0] if len(scorings) == 1 else "mixed"} if scorings else {}),
        "metrics": metrics,
        "tokens": {"input": input_tokens, "output": output_tokens},
        "seconds": round(seconds, 4),
        "tokens_per_second": round((input_tokens + output_tokens) / seconds, 2) if seconds > 0 else None,
    }
