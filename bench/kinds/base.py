"""What a task kind is: the requests it sends, the records it writes, and how the rest of accessbench treats it.

A kind is one object (one file in this package, registered in ``bench.kinds``). Evaluation, the
runner, the cost report and the site ask the kind instead of branching on its name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.metrics import metrics_for
from bench.models.base import Backend, GenerationParams

if TYPE_CHECKING:
    from bench.tasks import Doc, TaskSpec

SampleRecord = dict[str, Any]


@dataclass
class Scored:
    """A chunk's records, with per-record prefill/decode timings where the backend reported them."""

    records: list[SampleRecord]
    ttft: list[float | None] | None = None
    decode: list[float | None] | None = None


@dataclass(frozen=True)
class TaskKind:
    """Base of every task kind; subclasses implement ``ask`` and ``score``."""

    name: str
    templates: tuple[str, ...]  # the task-spec templates a task of this kind must have
    priced: bool = True  # runs inference (counting tokens is not: it prices nothing)
    prompted: bool = False  # items are prompts (templates, few-shot examples, shown outputs)
    has_choices: bool = False  # items carry a list of choices and a gold index
    needs_target: bool = False  # an item without a reference answer cannot be scored
    needs_reference_language: bool = False  # items are compared with their parallel in a reference language
    generates: bool = False  # throughput is decode speed, and chunks are one batch (not four)
    description: str = field(default="", compare=False)

    @property
    def metrics(self) -> frozenset[str]:
        """The metrics a task of this kind may list (each metric names its kinds)."""
        return metrics_for(self.name)

    def ask(self, spec: TaskSpec, docs: Sequence[Doc], backend: Backend, params: GenerationParams, reference: Mapping[str, Doc] | None) -> Any:
        """The backend calls for one chunk (measured by the meter); returns the raw answers."""
        raise NotImplementedError

    def score(self, spec: TaskSpec, docs: Sequence[Doc], answers: Any) -> Scored:
        """Per-sample records from the answers."""
        raise NotImplementedError


def record(doc: Doc, shown_input: str | None, output: str | None, values: Mapping[str, Any], input_tokens: int, output_tokens: int) -> SampleRecord:
    """One sample as stored in ``samples.jsonl``."""
    return {
        "doc_id": doc.id,
        "input": shown_input,
        "target": doc.target,
        "output": output,
        "values": dict(values),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        **({"choices": list(doc.choices)} if doc.choices else {}),
        **({"groups": dict(doc.groups)} if doc.groups else {}),
    }
