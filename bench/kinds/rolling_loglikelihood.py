"""``rolling_loglikelihood``: the log-likelihood of whole texts, for bits per byte and perplexity."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from bench.kinds.base import Scored, TaskKind, record
from bench.metrics import text_stats
from bench.models.base import Backend, GenerationParams, RollingResult

if TYPE_CHECKING:
    from bench.tasks import Doc, TaskSpec


class RollingLoglikelihood(TaskKind):
    def ask(self, spec: TaskSpec, docs: Sequence[Doc], backend: Backend, params: GenerationParams, reference: Mapping[str, Doc] | None) -> list[RollingResult]:
        return backend.loglikelihood_rolling([doc.text or "" for doc in docs])

    def score(self, spec: TaskSpec, docs: Sequence[Doc], answers: list[RollingResult]) -> Scored:
        records = []
        for doc, result in zip(docs, answers):
            values = {
                "neg_logprob": -result.logprob,
                "neg_log2_prob": -result.logprob / math.log(2),
                "tokens": result.input_tokens,
                **text_stats(doc.text or ""),
            }
            records.append(record(doc, doc.text, None, values, result.input_tokens, 0))
        return Scored(records)


ROLLING_LOGLIKELIHOOD = RollingLoglikelihood(
    "rolling_loglikelihood",
    ("text",),
    description="log-likelihood of whole texts (bits per byte, perplexity)",
)
