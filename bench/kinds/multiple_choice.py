"""``multiple_choice``: each choice is scored by its log-likelihood after the prompt; the best one is the answer.

A backend without prompt log-probabilities (an API endpoint whose ``scoring`` is ``generative``)
is asked for a letter instead, and the answer is parsed; records say which way they were scored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.kinds.base import SampleRecord, Scored, TaskKind, record
from bench.metrics import parse_choice
from bench.models.base import Backend, GenerationParams, GenerationRequest, GenerationResult, LoglikelihoodRequest, LoglikelihoodResult

if TYPE_CHECKING:
    from bench.tasks import Doc, TaskSpec


# Multiple choice answered with a letter: room for "The answer is (B) travel", up to a blank line.
LETTER_PARAMS = GenerationParams(max_new_tokens=24, stop=("\n\n",))


@dataclass(frozen=True)
class LetterAnswers:
    """Generated answers to the lettered prompts of a chunk's usable docs."""

    results: list[GenerationResult]


def _argmax(scores: Sequence[float]) -> int:
    return max(range(len(scores)), key=lambda i: scores[i])


def _defect_values(doc: Doc) -> dict[str, Any]:
    """A defective item is kept for comparability with published scores, and scored wrong."""
    return {"acc": 0.0, "acc_norm_bytes": 0.0, "gold": None, "predicted": None, "defect": doc.defect}


class MultipleChoice(TaskKind):
    def ask(
        self, spec: TaskSpec, docs: Sequence[Doc], backend: Backend, params: GenerationParams, reference: Mapping[str, Doc] | None
    ) -> list[LoglikelihoodResult] | LetterAnswers:
        if getattr(backend, "scoring", "loglikelihood") == "generative":
            usable = [doc for doc in docs if doc.defect is None]
            return LetterAnswers(backend.generate([GenerationRequest(doc.lettered_prompt or doc.prompt or "", LETTER_PARAMS) for doc in usable]))
        # every choice of every usable doc of the chunk in one backend call
        requests = [LoglikelihoodRequest(doc.prompt or "", " " + choice) for doc in docs if doc.defect is None for choice in doc.choices]
        return backend.loglikelihood(requests) if requests else []

    def score(self, spec: TaskSpec, docs: Sequence[Doc], answers: list[LoglikelihoodResult] | LetterAnswers) -> Scored:
        if isinstance(answers, LetterAnswers):
            return self._score_letters(docs, answers.results)
        choice_answers = iter(answers)
        records: list[SampleRecord] = []
        for doc in docs:
            if doc.defect is not None:
                records.append(record(doc, doc.prompt, None, _defect_values(doc), 0, 0))
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
            records.append({**record(doc, doc.prompt, doc.choices[predicted], values, input_tokens, 0), "scoring": "loglikelihood"})
        return Scored(records)

    @staticmethod
    def _score_letters(docs: Sequence[Doc], answers: list[GenerationResult]) -> Scored:
        generated = iter(answers)
        records: list[SampleRecord] = []
        ttft: list[float | None] = []
        decode: list[float | None] = []
        for doc in docs:
            if doc.defect is not None:
                records.append(record(doc, doc.prompt, None, _defect_values(doc), 0, 0))
                ttft.append(None)
                decode.append(None)
                continue
            answer = next(generated)
            parsed = parse_choice(answer.text, doc.choices)  # an answer naming no choice counts wrong; its text is kept
            values = {"acc": float(parsed == doc.gold), "acc_norm_bytes": None, "gold": doc.gold, "predicted": parsed}
            records.append({**record(doc, doc.lettered_prompt, answer.text, values, answer.input_tokens, answer.output_tokens), "scoring": "generative"})
            ttft.append(answer.ttft_seconds)
            decode.append(answer.decode_seconds)
        return Scored(records, ttft, decode)


MULTIPLE_CHOICE = MultipleChoice(
    "multiple_choice",
    ("prompt", "target"),
    prompted=True,
    has_choices=True,
    description="each choice is scored by its log-likelihood after the prompt",
)
