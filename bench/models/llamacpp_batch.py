"""Several sequences per llama.cpp decode, each in its own KV stream: greedy generation, and the context it runs in.

One decode step reads every weight once whatever the number of sequences in it, so decoding
``sequences`` prompts together costs little more than decoding one. Each sequence has its own KV
stream (``kv_unified`` off), so its attention sees only its own cells, in order, as when it runs
alone: the tokens are those of one-at-a-time greedy decoding, except where the two best logits tie
up to rounding (SmolLM2 on an AVX2 CPU: bit for bit; on an AVX-512 one, two of five test prompts
took the other token of an exact float32 tie). One unified KV cache shared by the sequences
instead moved SmolLM2's log-likelihoods by 0.1 nat (masked cells of other sequences in the
attention), which is why unrelated requests are scored in these streams too
(``llamacpp_scoring.score_apart``), and only a question's choices share one cache.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class _Stream:
    """One prompt being continued in its own llama.cpp sequence."""

    prompt: list[int]
    budget: int
    stops: tuple[str, ...]
    tokens: list[int] = field(default_factory=list)
    produced: int = 0
    streamed: bytes = b""  # per-token bytes, only to spot stop strings early
    done: bool = False


@dataclass(frozen=True)
class Continuation:
    tokens: list[int]  # generated, without the end-of-generation token
    produced: int  # tokens generated, the end-of-generation token included
    ttft_seconds: float  # until every sequence of the batch had its first token
    decode_seconds: float  # after that


def sequence_context(llm: Any, sequences: int, unified: bool, cells: int) -> tuple[Any, Any]:
    """A llama.cpp context on ``llm``'s model (its settings otherwise) for ``sequences`` sequences, in one KV cache of
    ``cells`` cells (``unified``) or in as many streams sharing them; and the handle of its memory."""
    import llama_cpp
    from llama_cpp import _internals as internals

    params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
    params.n_seq_max, params.kv_unified, params.n_ctx = sequences, unified, cells
    ctx = internals.LlamaContext(model=llm._model, params=params, verbose=False)
    return ctx, llama_cpp.llama_get_memory(ctx.ctx)


def logits_row(ctx: Any, index: int, n_vocab: int) -> np.ndarray:
    """The logits of the last decode's entry ``index`` (a view of llama.cpp's buffer, valid until the next decode)."""
    return np.ctypeslib.as_array(ctx.get_logits_ith(index), shape=(n_vocab,))


class SeparateStreams:
    """A llama.cpp context on ``llm``'s model with ``sequences`` separate KV streams of ``context`` tokens each."""

    def __init__(self, llm: Any, sequences: int, context: int, n_batch: int) -> None:
        import llama_cpp
        from llama_cpp import _internals as internals

        self.sequences, self.n_batch, self.n_vocab = sequences, n_batch, llm.n_vocab()
        self.ctx, memory = sequence_context(llm, sequences, unified=False, cells=sequences * context)
        self.batch = internals.LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=1, verbose=False)
        self.clear = lambda: llama_cpp.llama_memory_clear(memory, True)

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()

    def decode(self, entries: Sequence[tuple[int, int, int, bool]]) -> None:
        """Decode (token, position, sequence, wants logits) entries, at most ``n_batch``, in one batch."""
        batch = self.batch.batch
        batch.n_tokens = len(entries)
        for index, (token, position, sequence, wants) in enumerate(entries):
            batch.token[index], batch.pos[index], batch.n_seq_id[index] = token, position, 1
            batch.seq_id[index][0], batch.logits[index] = sequence, wants
        self.ctx.decode(self.batch)

    def logits(self, index: int) -> np.ndarray:
        return logits_row(self.ctx, index, self.n_vocab)


class BatchedGreedy:
    """Greedy continuations of up to ``streams.sequences`` prompts at once, one per stream."""

    def __init__(self, llm: Any, streams: SeparateStreams) -> None:
        import llama_cpp

        self.llm, self.streams, self.sequences = llm, streams, streams.sequences
        # llama.cpp's own greedy choice (the first best logit, as numpy's argmax), read from its output buffer in C.
        self.sampler = llama_cpp.llama_sampler_init_greedy()
        self._sample = lambda index: int(llama_cpp.llama_sampler_sample(self.sampler, streams.ctx.ctx, index))
        self._free_sampler = lambda: llama_cpp.llama_sampler_free(self.sampler)
        self.is_end = lambda token: bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, token))

    def close(self) -> None:
        self._free_sampler()

    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> list[int]:
        """Decode (token, position, sequence, wants a next token) entries in one batch; the greedy next tokens asked for, in order."""
        self.streams.decode(entries)
        return [self._sample(index) for index, entry in enumerate(entries) if entry[3]]

    def _take(self, stream: _Stream, token: int) -> None:
        stream.produced += 1
        if self.is_end(token):
            stream.done = True
            return
        stream.tokens.append(token)
        stream.streamed += self.llm.detokenize([token])
        tail = stream.streamed[-256:].decode("utf-8", errors="ignore")
        stream.done = stream.produced >= stream.budget or any(stop and stop in tail for stop in stream.stops)

    def run(self, prompts: Sequence[tuple[list[int], int, tuple[str, ...]]]) -> list[Continuation]:
        """Continue each (prompt ids, token budget, stop strings) greedily; at most ``sequences`` at once."""
        assert 0 < len(prompts) <= self.sequences
        streams = [_Stream(prompt, budget, stops) for prompt, budget, stops in prompts]
        started = time.perf_counter()
        self.streams.clear()
        # Prefill: every prompt's tokens, packed into decodes of n_batch; logits at each prompt's last token.
        entries = [(token, position, index, position == len(s.prompt) - 1) for index, s in enumerate(streams) for position, token in enumerate(s.prompt)]
        owners = [index for index, s in enumerate(streams) if s.prompt]  # in the order of their flagged last tokens
        n_batch = self.streams.n_batch
        firsts = [token for start in range(0, len(entries), n_batch) for token in self._decode(entries[start : start + n_batch])]
        for index, token in zip(owners, firsts):
            self._take(streams[index], token)
        first = time.perf_counter()
        while active := [index for index, s in enumerate(streams) if not s.done]:
            step = [(streams[index].tokens[-1], len(streams[index].prompt) + len(streams[index].tokens) - 1, index, True) for index in active]
            for index, token in zip(active, self._decode(step)):
                self._take(streams[index], token)
        ended = time.perf_counter()
        self.streams.clear()
        return [Continuation(s.tokens, s.produced, first - started, ended - first) for s in streams]
