"""The backend protocol: three string-in methods (as in lm-evaluation-harness) plus token counting.

Every result carries the number of input and output tokens the backend processed, so that
the runner can record them per sample and the cost meter can price them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.models.sources import ModelSource

CPU_AUTO_BATCH = 8  # CPU throughput stops improving past small batches; padding then only costs
GPU_AUTO_BATCH = 64  # start here on a GPU and halve on out-of-memory


def auto_batch_size(batch_size: int | str, device: str) -> int:
    """The configured batch size, or the starting size ``auto`` means on this device."""
    if isinstance(batch_size, int):
        return batch_size
    return GPU_AUTO_BATCH if device.startswith("cuda") else CPU_AUTO_BATCH


@dataclass(frozen=True)
class Preflight:
    """What a backend's ``preflight(spec)`` checked and resolved before anything was loaded."""

    source: ModelSource
    memory_bytes: int  # the estimate the fit check used
    resolved: dict[str, str | int]  # e.g. {"device": "cpu", "dtype": "float32"} or {"context": 2048}
    skips: Mapping[str, str] = field(default_factory=dict)  # task kind -> why this model cannot run it (cells skipped with a note)


@dataclass(frozen=True)
class GenerationParams:
    """How to continue one prompt."""

    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    greedy: bool = True
    temperature: float = 0.7
    top_p: float = 1.0


@dataclass(frozen=True)
class LoglikelihoodRequest:
    context: str
    continuation: str


@dataclass(frozen=True)
class GenerationRequest:
    context: str
    params: GenerationParams = field(default_factory=GenerationParams)


@dataclass(frozen=True)
class LoglikelihoodResult:
    logprob: float
    is_greedy: bool
    input_tokens: int
    continuation_tokens: int


@dataclass(frozen=True)
class RollingResult:
    logprob: float
    input_tokens: int


@dataclass(frozen=True)
class GenerationResult:
    """A continuation; the timings are those of the batch that produced it (None when the backend cannot tell)."""

    text: str
    input_tokens: int
    output_tokens: int
    ttft_seconds: float | None = None  # from the start of the batch to its first new token (prefill)
    decode_seconds: float | None = None  # from the first new token to the end of the batch


@dataclass(frozen=True)
class ModelInfo:
    """What was actually loaded, for the manifest and the summaries."""

    ref: str
    backend: str
    parameters: int
    dtype: str
    device: str
    quantization: str | None
    source: str
    endpoint: dict[str, Any] | None = None  # a served model: URL, model id, API, scoring, price (never a key)
    dtype_reason: str | None = None  # why this dtype (e.g. what `dtype: auto` found on this CPU)
    threads: int | None = None  # CPU threads the backend computes with (None: it computes elsewhere, e.g. an endpoint)


class Backend(Protocol):
    """A loaded model that answers evaluation requests in batches."""

    info: ModelInfo

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        """Log-probability of each continuation given its context, and whether it is the greedy one."""
        ...

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[RollingResult]:
        """Total log-probability of each whole text (for perplexity and bits per byte)."""
        ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Continue each context until a stop string, EOS or the token limit."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Number of tokens the model's own tokenizer makes of each text (no special tokens)."""
        ...

    def close(self) -> None:
        """Release the model (the runner holds one model at a time)."""
        ...


class TokenizingBackend:
    """What every in-process backend shares: the prompt's token ids (through the chat template
    when it applies, the backend's hook), left truncation to ``max_length``, and ``close``.
    A subclass sets ``spec`` and ``max_length`` and implements ``_encode`` and ``_chat_ids``."""

    spec: Any  # the ModelConfig
    max_length: int

    def _encode(self, text: str, special: bool) -> list[int]:
        """Token ids of ``text``; ``special``: with the special tokens the tokenizer adds (BOS)."""
        raise NotImplementedError

    def _chat_ids(self, context: str) -> list[int] | None:
        """The prompt's ids through the model's chat template, or None when no template applies."""
        raise NotImplementedError

    def uses_chat_template(self, setting: bool | str, has_template: bool) -> bool:
        """``chat_template: auto`` uses the model's template when it has one; ``true`` requires one."""
        if setting is True and not has_template:
            from bench.errors import UserError

            raise UserError(f"model {self.spec.ref} has no chat template; set chat_template: false (or auto) for it")
        return has_template and setting in (True, "auto")

    def _prompt_ids(self, context: str, params: GenerationParams) -> list[int]:
        """A generation prompt's ids, cut on the left so that the prompt and ``max_new_tokens`` fit in ``max_length``."""
        ids = self._chat_ids(context)
        if ids is None:
            ids = self._encode(context, special=True)
        room = max(1, self.max_length - params.max_new_tokens)
        return ids[-room:]

    def _scored_window(self, context_ids: list[int], continuation_ids: list[int]) -> list[int]:
        """A scored sequence cut on the left to ``max_length`` inputs (plus the last, predicted token)."""
        return (context_ids + continuation_ids)[-(self.max_length + 1) :]

    def close(self) -> None:
        """Release the model (the runner holds one model at a time)."""


def truncate_at_stop(text: str, stops: Sequence[str]) -> str:
    """Cut generated text at the first stop string."""
    cut = len(text)
    for stop in stops:
        position = text.find(stop)
        if stop and position != -1:
            cut = min(cut, position)
    return text[:cut]


def split_pair(encode: Callable[[str, bool], list[int]], prefix_token_id: int, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of a context and its continuation, tokenised together (as the model sees them) and split.

    ``encode(text, special)`` tokenises, adding the model's own special tokens when ``special``.
    A trailing space of the context moves to the continuation (tokenizers attach it to the next
    word); an empty context becomes the prefix token (BOS, else EOS).
    """
    if not context:
        return [prefix_token_id], encode(continuation, False)
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = encode(context + continuation, True)
    context_ids = encode(context, True)
    return context_ids, whole[len(context_ids) :]


def rolling_windows(tokens: list[int], prefix_token_id: int, max_length: int) -> list[tuple[list[int], list[int]]]:
    """(inputs, targets) windows that score every token once: disjoint spans of ``max_length`` targets,
    each predicted from the tokens just before it, the first from the prefix token."""
    shifted = [prefix_token_id] + tokens
    windows = []
    for start in range(0, len(tokens), max_length):
        targets = tokens[start : start + max_length]
        windows.append((shifted[start : start + len(targets)], targets))
    return windows
