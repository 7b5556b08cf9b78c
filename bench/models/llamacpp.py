"""The llama.cpp backend (llama-cpp-python): GGUF files run natively, about 5× faster than transformers on a CPU.

Scoring does not use ``create_completion(echo=True, logprobs=…)``, which is misaligned for
models without a BOS token; it decodes token ids itself (``llamacpp_scoring``): each token that
requests share once, a question's choices as several sequences of one decode, and logits only at
the positions that are scored (the output layer of a 262k vocabulary costs more than the rest of a
small model).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.config import BatchSize, ModelConfig
from bench.errors import UserError
from bench.models.base import (
    GenerationParams,
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
from bench.models.llamacpp_batch import BatchedGreedy, SeparateStreams
from bench.models.llamacpp_scoring import SharedContextScorer, score_apart
from bench.models.memory import check_fits_bytes
from bench.models.native_probe import probe_llama_cpp
from bench.models.sources import resolve
from bench.models.threads import compute_threads

DEFAULT_CONTEXT = 2048
N_BATCH = 512  # tokens per llama.cpp decode
STREAM_SEQUENCES = 4  # sequences decoded together in separate KV streams (greedy generations, rolling texts), at most
SCORING_SEQUENCES = 16  # continuations of one context scored in one decode, at most
INSTALL_HINT = "install it with `python install.py llamacpp` in the accessbench checkout (it builds llama.cpp from source for this CPU, 5-12 minutes)"


# llama.cpp logs at error level that a sliding-window model's KV cache is kept at full size (Gemma 3;
# what reusing a shared prefix needs): a notice, not an error, printed twice per model otherwise.
NOTICES_NOT_PRINTED = (b"using full-size SWA cache",)
_log_callback: list[Any] = []  # the ctypes callback llama.cpp holds, kept alive


def llama_cpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def _drop_notices_from_the_log() -> None:
    """llama.cpp's log goes through llama-cpp-python's own printer (its verbosity rules), less NOTICES_NOT_PRINTED."""
    if _log_callback:
        return
    import ctypes

    import llama_cpp
    from llama_cpp import _logger

    printer = _logger.llama_log_callback  # held here: at interpreter exit the module's globals go before llama.cpp's last log

    def forward(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if not any(notice in text for notice in NOTICES_NOT_PRINTED):
            printer(level, text, user_data)

    _log_callback.append(llama_cpp.llama_log_callback(forward))
    llama_cpp.llama_log_set(_log_callback[0], ctypes.c_void_p(0))


def _gguf_shape(path: Path) -> tuple[int, int, int]:
    """Training context length, vocabulary size and float16 KV-cache bytes per token, from a GGUF header (no weights read)."""
    header = read_header(path)
    architecture = header.string("general.architecture")

    def field(name: str) -> int | None:
        return header.integer(f"{architecture}.{name}")

    trained = field("context_length") or DEFAULT_CONTEXT
    heads = field("attention.head_count") or 1
    head_size = field("attention.key_length") or (field("embedding_length") or 0) // heads
    kv_bytes = (field("block_count") or 0) * 2 * (field("attention.head_count_kv") or heads) * head_size * 2
    return trained, header.array_lengths["tokenizer.ggml.tokens"], kv_bytes


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
    trained, vocabulary, kv_bytes = _gguf_shape(path)
    n_ctx = spec.max_length or min(trained, DEFAULT_CONTEXT)
    # Weights (the file), batches of float32 logits (the output buffers of scoring's and the streams' contexts,
    # and llama-cpp-python's copy), and the KV caches: llama-cpp-python's own context, scoring's (a batch
    # longer) and the streams of greedy generation and rolling texts.
    device = "cuda" if spec.device.startswith("cuda") else "cpu"
    needed = path.stat().st_size + 3 * N_BATCH * vocabulary * 4 + ((2 + STREAM_SEQUENCES) * n_ctx + N_BATCH) * kv_bytes
    check_fits_bytes(spec.ref, needed, device, spec.max_memory)
    return Preflight(source, needed, {"context": n_ctx})


class LlamaCppBackend(TokenizingBackend):
    """Answers the backend protocol with llama.cpp: a context's continuations, and greedy generations, several sequences per decode."""

    def __init__(self, spec: ModelConfig, batch_size: BatchSize = "auto", seed: int = 1234) -> None:
        self.spec = spec
        checked = preflight(spec)
        self.source, n_ctx = checked.source, int(checked.resolved["context"])
        from llama_cpp import Llama

        _drop_notices_from_the_log()
        path = Path(self.source.location)
        gpu_layers = -1 if spec.device.startswith("cuda") else 0
        threads = compute_threads()
        self.llm = Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=N_BATCH,
            logits_all=False,
            verbose=False,
            seed=seed,
            n_gpu_layers=gpu_layers,
            n_threads=threads,
            n_threads_batch=threads,  # llama-cpp-python's default: every logical CPU, SMT siblings and other processes' cores included
        )
        self.batch_size = batch_size if isinstance(batch_size, int) else 8  # requests per runner chunk
        # Greedy generations and rolling texts decode this many sequences together, each in its own KV stream of max_length tokens.
        self.stream_sequences = min(self.batch_size, STREAM_SEQUENCES)
        self._streams: SeparateStreams | None = None
        self._batched_greedy: BatchedGreedy | None = None
        self.scoring_sequences = SCORING_SEQUENCES  # 1: every request a decode of its own (benchmarks/shared_prefix.py)
        self._scorer: SharedContextScorer | None = None
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
            threads=threads,
        )

    def _file_type(self) -> str:
        description = self.llm._model.desc()  # e.g. "llama 135M Q4_1"
        return description.split(" ", 2)[-1] if description.count(" ") >= 2 else "gguf"  # "gemma3 270M Q4_K - Medium" -> "Q4_K - Medium"

    def _chat_formatter(self, setting: bool | str) -> Any | None:
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not self.uses_chat_template(setting, bool(template)) or not template:
            return None
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        special = lambda token: self.llm.detokenize([token], special=True).decode("utf-8", "replace") if token >= 0 else ""  # noqa: E731
        return Jinja2ChatFormatter(template=template, eos_token=special(self.eos_id), bos_token=special(self.bos_id))

    def close(self) -> None:
        if self._batched_greedy is not None:
            self._batched_greedy.close()
        if self._streams is not None:
            self._streams.close()
        if self._scorer is not None:
            self._scorer.close()
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
    def _score(self, jobs: Sequence[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        if self._scorer is None or self._scorer.sequences != self.scoring_sequences:
            if self._scorer is not None:
                self._scorer.close()
            self._scorer = SharedContextScorer(self.llm, self.scoring_sequences, N_BATCH)
        return self._scorer.score(jobs)

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        encoded = [self._encode_pair(r.context, r.continuation) for r in requests]
        for request, (_, continuation_ids) in zip(requests, encoded):
            if not continuation_ids:
                raise UserError(f"an empty continuation cannot be scored (context: {request.context[:60]!r})")
        # Sorted by the token sequence, requests that share a context follow each other and reuse its KV cache.
        order = sorted(range(len(requests)), key=lambda i: encoded[i][0] + encoded[i][1])
        sequences = {index: self._scored_window(*encoded[index]) for index in order}
        jobs = [(sequences[index][:-1], encoded[index][1][-(len(sequences[index]) - 1) :]) for index in order]
        results: list[LoglikelihoodResult | None] = [None] * len(requests)
        for index, (inputs, targets), (logprob, greedy) in zip(order, jobs, self._score(jobs)):
            results[index] = LoglikelihoodResult(logprob, greedy, input_tokens=len(inputs), continuation_tokens=len(targets))
        return [result for result in results if result is not None]

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[RollingResult]:
        """Every text's windows, several per decode in separate KV streams (``score_apart``)."""
        encoded = [self._encode(text, special=False) for text in texts]
        windows = [rolling_windows(tokens, self.prefix_token_id, self.max_length) for tokens in encoded]
        scores = iter(score_apart(self._separate_streams(), [window for text in windows for window in text], self.scoring_sequences))
        return [RollingResult(logprob=sum(next(scores)[0] for _ in text), input_tokens=len(tokens)) for text, tokens in zip(windows, encoded)]

    # ---------------------------------------------------------------- generation
    def _chat_ids(self, context: str) -> list[int] | None:
        if self.chat_formatter is None:
            return None
        prompt = self.chat_formatter(messages=[{"role": "user", "content": context}]).prompt
        ids: list[int] = self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        return ids

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Greedy requests several per decode (``llamacpp_batch``), the others one at a time with llama-cpp-python's sampler."""
        prompts = [self._prompt_ids(request.context, request.params) for request in requests]
        results: dict[int, GenerationResult] = {}
        greedy = sorted((index for index, request in enumerate(requests) if request.params.greedy), key=lambda index: len(prompts[index]))
        for start in range(0, len(greedy), self.stream_sequences):
            group = greedy[start : start + self.stream_sequences]
            budgets = [(prompts[index], self._budget(prompts[index], requests[index].params), requests[index].params.stop) for index in group]
            for index, continuation in zip(group, self._batched().run(budgets)):
                results[index] = self._result(
                    continuation.tokens, prompts[index], continuation.produced, requests[index].params, continuation.ttft_seconds, continuation.decode_seconds
                )
        for index, request in enumerate(requests):
            if not request.params.greedy:
                results[index] = self._sample(prompts[index], request.params)
        return [results[index] for index in range(len(requests))]

    def _budget(self, prompt: list[int], params: GenerationParams) -> int:
        return min(params.max_new_tokens, self.max_length - len(prompt))

    def _separate_streams(self) -> SeparateStreams:
        if self._streams is None:
            self._streams = SeparateStreams(self.llm, self.stream_sequences, self.max_length, N_BATCH)
        return self._streams

    def _batched(self) -> BatchedGreedy:
        if self._batched_greedy is None:
            self._batched_greedy = BatchedGreedy(self.llm, self._separate_streams())
        return self._batched_greedy

    def _result(self, tokens: list[int], prompt: list[int], produced: int, params: GenerationParams, ttft: float, decode: float) -> GenerationResult:
        text = self.llm.detokenize(tokens).decode("utf-8", errors="replace")
        return GenerationResult(truncate_at_stop(text, params.stop), input_tokens=len(prompt), output_tokens=produced, ttft_seconds=ttft, decode_seconds=decode)

    def _sample(self, prompt: list[int], params: GenerationParams) -> GenerationResult:
        """One prompt continued with llama-cpp-python's seeded sampler."""
        import llama_cpp

        budget = self._budget(prompt, params)
        started = time.perf_counter()
        first: float | None = None
        tokens: list[int] = []
        produced = 0
        streamed = b""  # per-token bytes, only to spot stop strings early; the text is decoded whole at the end
        for token in self.llm.generate(prompt, temp=params.temperature, top_k=0, top_p=params.top_p, min_p=0.0, repeat_penalty=1.0):
            first = first if first is not None else time.perf_counter()
            produced += 1
            if llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token):
                break
            tokens.append(token)
            streamed += self.llm.detokenize([token])
            tail = streamed[-256:].decode("utf-8", errors="ignore")
            if produced >= budget or any(stop and stop in tail for stop in params.stop):
                break
        ended = time.perf_counter()
        first = first if first is not None else ended
        return self._result(tokens, prompt, produced, params, first - started, ended - first)
