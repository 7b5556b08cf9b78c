"""``tokenizer_stats``: tokens the model's own tokenizer makes of a text and of its parallel in a reference language."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from bench.kinds.base import Scored, TaskKind, record
from bench.metrics import text_stats
from bench.models.base import Backend, GenerationParams

if TYPE_CHECKING:
    from bench.tasks import Doc, TaskSpec

Counts = tuple[list[int], list[int | None]]


class TokenizerStats(TaskKind):
    def ask(self, spec: TaskSpec, docs: Sequence[Doc], backend: Backend, params: GenerationParams, reference: Mapping[str, Doc] | None) -> Counts:
        references = [reference.get(doc.id) if reference is not None else None for doc in docs]
        counts = backend.count_tokens([doc.text or "" for doc in docs])
        reference_counts = iter(backend.count_tokens([ref.text or "" for ref in references if ref is not None]))
        return counts, [next(reference_counts) if ref is not None else None for ref in references]

    def score(self, spec: TaskSpec, docs: Sequence[Doc], answers: Counts) -> Scored:
        counts, reference_counts = answers
        records = [
            record(doc, doc.text, None, {"tokens": count, **text_stats(doc.text or ""), "reference_tokens": reference_count}, count, 0)
            for doc, count, reference_count in zip(docs, counts, reference_counts)
        ]
        return Scored(records)


TOKENIZER_STATS = TokenizerStats(
    "tokenizer_stats",
    ("text",),
    priced=False,
    needs_reference_language=True,
    description="the model's tokenizer on a text and its parallel (the language tax)",
)
