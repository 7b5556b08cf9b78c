"""``generate``: the model continues a prompt; the text is scored against a reference answer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bench.kinds.base import Scored, TaskKind, record
from bench.metrics import METRICS, CorpusMetric
from bench.models.base import Backend, GenerationParams, GenerationRequest, GenerationResult

if TYPE_CHECKING:
    from bench.tasks import Doc, TaskSpec


def score_generation(spec: TaskSpec, doc: Doc, output: str) -> dict[str, Any]:
    """Per-sample values for the task's metrics; corpus metrics keep the sentence's sacrebleu statistics."""
    target, values = doc.target or "", dict[str, Any]()
    for name in spec.metrics:
        metric = METRICS[name]
        if isinstance(metric, CorpusMetric):
            values[metric.column] = metric.per_sample(output, target)
        elif metric.per_sample is not None:
            values[name] = metric.per_sample(output, target)
    return values


class Generate(TaskKind):
    def ask(
        self, spec: TaskSpec, docs: Sequence[Doc], backend: Backend, params: GenerationParams, reference: Mapping[str, Doc] | None
    ) -> list[GenerationResult]:
        return backend.generate([GenerationRequest(doc.prompt or "", params) for doc in docs])

    def score(self, spec: TaskSpec, docs: Sequence[Doc], answers: list[GenerationResult]) -> Scored:
        records = [
            record(doc, doc.prompt, answer.text, score_generation(spec, doc, answer.text), answer.input_tokens, answer.output_tokens)
            for doc, answer in zip(docs, answers)
        ]
        return Scored(records, [answer.ttft_seconds for answer in answers], [answer.decode_seconds for answer in answers])


GENERATE = Generate(
    "generate",
    ("prompt", "target"),
    prompted=True,
    needs_target=True,
    generates=True,
    description="the model continues the prompt; the text is scored against the reference",
)
