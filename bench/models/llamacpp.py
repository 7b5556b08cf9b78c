"""The llama.cpp backend (llama-cpp-python): GGUF files run natively, about 5× faster than transformers on a CPU.

Scoring does not use ``create_completion(echo=True, logprobs=…)``, which is misaligned for
models without a BOS token; it evaluates token ids with the low-level ``eval`` and reads the
logits llama.cpp keeps for every position (``logits_all``). The KV cache is reused across
requests that share a prefix (for instance the context of multiple-choice questions).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.config import BatchSize, ModelConfig
from bench.errors import UserError
from bench.models.base import (
    GenerationRequest,
    GenerationResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    ModelInfo,
    Preflight,
    RollingResult,
    TokenizingBackend,
    rolling_windows,
    split_pair,
    truncate_at_stop,
)
from bench.models.gguf_header import read_header
from bench.models.memory import check_fits_bytes
from bench.models.native_probe import probe_llama_cpp
from bench.models.sources import resolve
from bench.models.threads import physical_cores

DEFAULT_CONTEXT = 2048
INSTALL_HINT = "install it with `python install.py llamacpp` in the accessbench checkout (it builds llama.cpp from source for this CPU, 5-12 minutes)"


def llama_cpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def _log_softmax_rows(rows: np.ndarray) -> np.ndarray:
    shifted = rows - rows.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _gguf_context_and_vocabulary(path: Path) -> tuple[int, int]:
    """Training context length and vocabulary size from a GGUF header (no weights read)."""
    header = read_header(path)
    trained = header.integer(f"{header.string('general.architecture')}.context_length") or DEFAULT_CONTEXT
    return trained, header.array_lengths["tokenizer.ggml.tokens"]


def preflight(spec: ModelConfig) -> Preflight:
    """Check a model for this backend before loading it; resolves the context length to use."""
    if not llama_cpp_installed():
        raise UserError(f"backend llamacpp needs llama-cpp-python; {INSTALL_HINT}, or use backend: hf")
    source = resolve(spec.ref, spec.revision)
    if source.kind != "gguf":
        raise UserError(f"backend llamacpp runs GGUF files; {spec.ref} is a transformers checkpoint, so use backend: hf for it")
    path = Path(source.location)
    probe = probe_llama_cpp()
    if not probe.ok:
        raise UserError(f"backend llamacpp cannot run here: {probe.reason}; or use backend: hf")
    trained, vocabulary = _gguf_context_and_vocabulary(path)
    n_ctx = spec.max_length or min(trained, DEFAULT_CONTEXT)
    # Weights (the file) plus the float32 logits kept for every position of the context.
    device = "cuda" if spec.device.startswith("cuda") else "cpu"
    needed = path.stat().st_size + n_ctx * vocabulary * 4
    check_fits_bytes(spec.ref, needed, device, spec.max_memory)
    return Preflight(source, needed, {"context": n_ctx})


class LlamaCppBackend(TokenizingBackend):
    """Answers the backend protocol with llama.cpp, one sequence at a time, reusing shared prefixes."""

    def __init__(self, spec: ModelConfig, batch_size: BatchSize = "auto", seed: int = 1234) -> None:
        self.spec = spec
        checked = preflight(spec)
        self.source, n_ctx = checked.source, int(checked.resolved["context"])
        from llama_cpp import Llama

        path = Path(self.source.location)
        gpu_layers = -1 if spec.device.startswith("cuda") else 0
        self.llm = Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=512,
            logits_all=True,
            verbose=False,
            seed=seed,
            n_gpu_layers=gpu_layers,
            n_threads=physical_cores(),
        )
        self.batch_size = batch_size if isinstance(batch_size, int) else 8  # requests per runner chunk; llama.cpp runs one sequence at a time
        self.max_length = n_ctx
        self.bos_id, self.eos_id = self.llm.token_bos(), self.llm.token_eos()
        self.prefix_token_id = self.bos_id if self.bos_id >= 0 else self.eos_id
        self.chat_formatter = self._chat_formatter(spec.chat_template)
        self.time_first_token = True
        self.info = ModelInfo(
            ref=spec.ref,
            backend="llamacpp",
            parameters=int(self.llm._model.n_params()),
            dtype=self._file_type(),
            device="cuda" if gpu_layers else "cpu",
            quantization=self._file_type(),
            source=str(path),
        )

    def _file_type(self) -> str:
        description = self.llm._model.desc()  # e.g. "llama 135M Q4_1"
        return description.rsplit(" ", 1)[-1] if description else "gguf"

    def _chat_formatter(self, setting: bool | str) -> Any | None:
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not self.uses_chat_template(setting, bool(template)) or not template:
            return None
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        special = lambda token: self.llm.detokenize([token], special=True).decode("utf-8", "replace") if token >= 0 else ""  # noqa: E731
        return Jinja2ChatFormatter(template=template, eos_token=special(self.eos_id), bos_token=special(self.bos_id))

    def close(self) -> None:
        self.llm.close()

    # ---------------------------------------------------------------- tokenisation
    def _encode(self, text: str, special: bool) -> list[int]:
        """``special``: add the BOS token the model's vocabulary asks for (as transformers' add_special_tokens)."""
        if not text:
            return []
        return self.llm.tokenize(text.encode("utf-8"), add_bos=special, special=False)

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        return split_pair(self._encode, self.prefix_token_id, context, continuation)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(self._encode(text, special=False)) for text in texts]

    # ---------------------------------------------------------------- scoring
    def _evaluate(self, tokens: list[int]) -> None:
        """Make llama.cpp's state hold ``tokens``, evaluating only what differs from what it already holds."""
        held = self.llm.input_ids[: self.llm.n_tokens]
        common = 0
        for held_token, token in zip(held, tokens):
            if held_token != token:
                break
            common += 1
        self.llm.n_tokens = common
        if common < len(tokens):
            self.llm.eval(tokens[common:])

    def _score(self, inputs: list[int], targets: list[int]) -> tuple[float, bool]:
        """The last len(targets) positions of ``inputs`` predict ``targets``."""
        self._evaluate(inputs)
        rows = self.llm.scores[len(inputs) - len(targets) : len(inputs)]
        logprobs = _log_softmax_rows(rows.astype(np.float64))
        picked = logprobs[np.arange(len(targets)), targets]
        return float(picked.sum()), bool((rows.argmax(axis=-1) == np.asarray(targets)).all())

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        encoded = [self._encode_pair(r.context, r.continuation) for r in requests]
        results: list[LoglikelihoodResult | None] = [None] * len(requests)
        # Sorted by the token sequence, requests that share a context follow each other and reuse its KV cache.
        for index in sorted(range(len(requests)), key=lambda i: encoded[i][0] + encoded[i][1]):
            context_ids, continuation_ids = encoded[index]
            if not continuation_ids:
                raise UserError(f"an empty continuation cannot be scored (context: {requests[index].context[:60]!r})")
            sequence = self._scored_window(context_ids, continuation_ids)
            targets = continuation_ids[-(len(sequence) - 1) :]
            logprob, greedy = self._score(sequence[:-1], targets)
            results[index] = LoglikelihoodResult(logprob, greedy, input_tokens=len(sequence) - 1, continuation_tokens=len(targets))
        return [result for result in results if result is not None]

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[RollingResult]:
        results = []
        for text in texts:
            tokens = self._encode(text, special=False)
            total = sum(self._score(inputs, targets)[0] for inputs, targets in rolling_windows(tokens, self.prefix_token_id, self.max_length))
            results.append(RollingResult(logprob=total, input_tokens=len(tokens)))
        return results

    # ---------------------------------------------------------------- generation
    def _chat_ids(self, context: str) -> list[int] | None:
        if self.chat_formatter is None:
            return None
        prompt = self.chat_formatter(messages=[{"role": "user", "content": context}]).prompt
        ids: list[int] = self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        return ids

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        import llama_cpp

        results = []
        for request in requests:
            params = request.params
            prompt = self._prompt_ids(request.context, params)
            budget = min(params.max_new_tokens, self.max_length - len(prompt))
            started = time.perf_counter()
            first: float | None = None
            tokens: list[int] = []
            produced = 0
            streamed = b""  # per-token bytes, only to spot stop strings early; the text is decoded whole at the end
            sampler = self.llm.generate(
                prompt,
                temp=0.0 if params.greedy else params.temperature,
                top_k=1 if params.greedy else 0,
                top_p=params.top_p,
                min_p=0.0,
                repeat_penalty=1.0,
            )
            for token in sampler:
                first = first if first is not None else time.perf_counter()
                produced += 1
                if llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token):
                    break
                tokens.append(token)
                streamed += self.llm.detokenize([token])
                tail = streamed[-256:].decode("utf-8", errors="ignore")
                if produced >= budget or any(stop and stop in tail for stop in params.stop):
                    break
            text = self.llm.detokenize(tokens).decode("utf-8", errors="replace")
            ended = time.perf_counter()
            first = first if first is not None else ended
            results.append(
                GenerationResult(
                    text=truncate_at_stop(text, params.stop),
                    input_tokens=len(prompt),
                    output_tokens=produced,
                    ttft_seconds=first - started,
                    decode_seconds=ended - first,
                )
            )
        return results
