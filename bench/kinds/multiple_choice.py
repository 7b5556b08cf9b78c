"""``multiple_choice``: each choice is scored by its log-likelihood after the prompt; the best one is the answer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bench.kinds.base import SampleRecord, Scored, TaskKind, record
from bench.models.base import Backend, GenerationParams, LoglikelihoodRequest, LoglikelihoodResult

if TYPE_CHECKING:
    from bench.tasks import Doc, TaskSpec


def _argmax(scores: Sequence[float]) -> int:
    return max(range(len(scores)), key=lambda i: scores[i])


class MultipleChoice(TaskKind):
    def ask(
        self, spec: TaskSpec, docs: Sequence[Doc], backend: Backend, params: GenerationParams, reference: Mapping[str, Doc] | None
    ) -> list[LoglikelihoodResult]:
        # every choice of every usable doc of the chunk in one backend call
        requests = [LoglikelihoodRequest(doc.prompt or "", " " + choice) for doc in docs if doc.defect is None for choice in doc.choices]
        return backend.loglikelihood(requests) if requests else []

    def score(self, spec: TaskSpec, docs: Sequence[Doc], answers: list[LoglikelihoodResult]) -> Scored:
        choice_answers = iter(answers)
        records: list[SampleRecord] = []
        for doc in docs:
            if doc.defect is not None:  # kept for comparability with published scores, and scored wrong
                defect = {"acc": 0.0, "acc_norm_bytes": 0.0, "gold": None, "predicted": None, "defect": doc.defect}
                records.append(record(doc, doc.prompt, None, defect, 0, 0))
                continue
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
            records.append(record(doc, doc.prompt, doc.choices[predicted], values, input_tokens, 0))
        return Scored(records)


MULTIPLE_CHOICE = MultipleChoice(
    "multiple_choice",
    ("prompt", "target"),
    prompted=True,
    has_choices=True,
    description="each choice is scored by its log-likelihood after the prompt",
)
