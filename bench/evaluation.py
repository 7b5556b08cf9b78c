"""Turning docs into backend requests, and backend answers into scored sample records."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any

from bench.config import GenerationConfig
from bench.cost.meter import Meter, Reading, split_reading
from bench.kinds import task_kind
from bench.kinds.base import SampleRecord
from bench.metrics import METRICS, aggregate
from bench.models.base import Backend, GenerationParams
from bench.tasks import Doc, TaskSpec


def generation_params(spec: TaskSpec, defaults: GenerationConfig) -> GenerationParams:
    """Fields the user set in the run config win; then the task's own; then the global defaults."""
    chosen = defaults.model_fields_set
    max_new = defaults.max_new_tokens if "max_new_tokens" in chosen or spec.generation.max_new_tokens is None else spec.generation.max_new_tokens
    stop = defaults.stop if "stop" in chosen or spec.generation.stop is None else spec.generation.stop
    return GenerationParams(max_new_tokens=max_new, stop=tuple(stop), greedy=defaults.greedy, temperature=defaults.temperature, top_p=defaults.top_p)


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
    kind = task_kind(spec.kind)
    with meter.measure() if meter is not None else nullcontext(Reading()) as reading:
        answers = kind.ask(spec, docs, backend, params, reference)
    scored = kind.score(spec, docs, answers)
    records = scored.records
    if meter is None:
        share = (time.perf_counter() - started) / max(1, len(records))
        for record in records:
            record["seconds"] = share
        return records
    metered = split_reading(reading, [r["input_tokens"] for r in records], [r["output_tokens"] for r in records], scored.ttft, scored.decode)
    for record, measured in zip(records, metered):
        record["seconds"] = measured["prefill_s"] + measured["decode_s"]
        record["meter"] = measured
    return records


def _scores(spec: TaskSpec, samples: Sequence[SampleRecord], seed: int) -> dict[str, dict[str, Any]]:
    return {name: aggregate(METRICS[name], [sample["values"] for sample in samples], seed) for name in spec.metrics}


def subgroup_scores(spec: TaskSpec, samples: Sequence[SampleRecord], seed: int) -> dict[str, dict[str, Any]]:
    """Per subgroup (e.g. specialty) and value: the item count and every metric with its 95 % interval."""
    breakdown: dict[str, dict[str, Any]] = {}
    for name in spec.subgroups:
        members: dict[str, list[SampleRecord]] = {}
        for sample in samples:
            value = (sample.get("groups") or {}).get(name)
            if value is not None:
                members.setdefault(str(value), []).append(sample)
        if members:
            breakdown[name] = {value: {"n": len(group), "metrics": _scores(spec, group, seed)} for value, group in sorted(members.items())}
    return breakdown


def summarize(spec: TaskSpec, samples: Sequence[SampleRecord], seed: int) -> dict[str, Any]:
    """Scores with 95 % intervals (overall, per subgroup, and without defective items), token totals and time for one cell."""
    metrics = {}
    for name, score in _scores(spec, samples, seed).items():
        metric = METRICS[name]
        metrics[name] = {**score, "higher_is_better": metric.higher_is_better, "description": metric.description}
    defective = sorted(sample["doc_id"] for sample in samples if (sample.get("values") or {}).get("defect"))
    extra: dict[str, Any] = {"domain": spec.domain}
    if spec.subgroups:
        extra["subgroups"] = subgroup_scores(spec, samples, seed)
    if defective:
        usable = [sample for sample in samples if not sample["values"].get("defect")]
        extra["defective_items"] = defective
        extra["metrics_without_defective"] = _scores(spec, usable, seed)
    seconds = sum(sample.get("seconds", 0.0) for sample in samples)
    input_tokens = sum(sample["input_tokens"] for sample in samples)
    output_tokens = sum(sample["output_tokens"] for sample in samples)
    scorings = sorted({sample.get("scoring", "loglikelihood") for sample in samples}) if spec.task_kind.has_choices else []
    return {
        "n_samples": len(samples),
        **({"scoring": scorings[0] if len(scorings) == 1 else "mixed"} if scorings else {}),
        "metrics": metrics,
        "tokens": {"input": input_tokens, "output": output_tokens},
        "seconds": round(seconds, 4),
        "tokens_per_second": round((input_tokens + output_tokens) / seconds, 2) if seconds > 0 else None,
        **extra,
    }
