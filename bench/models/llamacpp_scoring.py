"""Scoring with llama.cpp: the continuations of a context as several sequences of one decode.

A call's ``(inputs, targets)`` jobs come sorted, so that jobs sharing a prefix are adjacent. Jobs
whose whole context is shared with the job before them (the choices of a multiple-choice question)
form an item. One decode per item evaluates what the item does not share with the item before it:
its shared part (the trunk) once, carrying the sequence ids of all its members, and each member's
own tokens after it under that member's id, in one KV cache unified across the sequences. The
item's last member stays in the cache as sequence 0, so the next item evaluates only what differs
from it (a task's instruction runs once per call). A scored position's logits are read once, in the
decode that computes it, for every job that scores a target there, later items' jobs included.

Cells stay in position order up to where a sequence's own tokens begin, as when the request runs
alone: a sequence placed after another sequence's masked cells moved SmolLM2's scores by up to
0.2 nat, which is why unrelated requests (rolling windows of different texts) are not packed into
one decode; those run several per decode in separate KV streams instead (``score_apart``). Every
call starts from an empty cache, so that scores never depend on an earlier call.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from bench.models.llamacpp_batch import SeparateStreams, logits_row, sequence_context

Job = tuple[list[int], list[int]]  # inputs, and the targets their last len(targets) positions predict
ROW_TILE = 4  # rows that llama.cpp's repacked x86 matrix kernels take together (its remainder rows take another kernel)
Key = tuple[int, int]  # (job, position): the first job, in order, whose decode computes that position


def common_length(first: Sequence[int], second: Sequence[int]) -> int:
    length = 0
    for a, b in zip(first, second):
        if a != b:
            break
        length += 1
    return length


def shared_lengths(jobs: Sequence[Job]) -> list[int]:
    """How many input tokens each job shares with the job before it (the first: none, as the cache starts empty)."""
    return [0] + [common_length(before, inputs) for (before, _), (inputs, _) in pairwise(jobs)]


def readers(jobs: Sequence[Job], shared: list[int]) -> dict[Key, list[tuple[int, int]]]:
    """The (job, target index) pairs scored at each computed position: a job reads a position from the
    nearest job at or before it from which every job in between shares that position."""
    wanted: dict[Key, list[tuple[int, int]]] = {}
    for index, (inputs, targets) in enumerate(jobs):
        for target_index, position in enumerate(range(len(inputs) - len(targets), len(inputs))):
            owner = index
            while shared[owner] > position:
                owner -= 1
            wanted.setdefault((owner, position), []).append((index, target_index))
    return wanted


def trunk(jobs: Sequence[Job], shared: list[int], item: range) -> int:
    """The positions every member of an item has in common (all of a lone job's)."""
    return min((shared[index] for index in item[1:]), default=len(jobs[item.start][0]))


def items(jobs: Sequence[Job], shared: list[int], sequences: int, spare_cells: int) -> list[range]:
    """Runs of jobs with a context whose trunk holds the contexts of all members but the first (whose own
    tokens follow the trunk's cells directly): only continuations are placed after other sequences' cells.
    At most ``sequences`` jobs and ``spare_cells`` tokens after the trunk."""
    runs: list[range] = []
    for index in range(len(jobs)):
        grown = range(runs[-1].start, index + 1) if runs else range(index, index + 1)
        common = trunk(jobs, shared, grown)
        contexts = [len(jobs[member][0]) - len(jobs[member][1]) for member in grown[1:]]
        if (
            runs
            and len(grown) <= sequences
            and all(0 < context <= common for context in contexts)
            and sum(len(jobs[member][0]) - common for member in grown) <= spare_cells
        ):
            runs[-1] = grown
        else:
            runs.append(range(index, index + 1))
    return runs


def target_scores(row: np.ndarray, targets: Sequence[int]) -> list[tuple[float, bool]]:
    """Each target's log-probability under one row of logits, and whether it is the row's argmax."""
    top = float(row.max())
    log_total = float(np.log(np.exp(row.astype(np.float64) - top).sum()))
    best = int(row.argmax())
    return [(float(row[target]) - top - log_total, best == target) for target in targets]


def padded(length: int) -> int:
    return -(-length // ROW_TILE) * ROW_TILE


def rounds(lengths: Sequence[int], sequences: int, n_batch: int) -> list[list[int]]:
    """Indexes of ``lengths``, shortest first, in groups of at most ``sequences`` that fit one decode of
    ``n_batch`` tokens when each is padded to the group's longest (a longer one alone)."""
    groups: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lambda index: lengths[index]):
        if groups and len(groups[-1]) < sequences and (len(groups[-1]) + 1) * lengths[index] <= n_batch:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def score_apart(streams: SeparateStreams, jobs: Sequence[Job], sequences: int) -> list[tuple[float, bool]]:
    """Jobs that share nothing (rolling windows), up to ``sequences`` per decode, each in a stream of its own
    from an empty cache, bit for bit as each job decoded alone. Shorter jobs are padded at their end to the
    longest of the decode (causal attention: the padding changes nothing before it) because llama.cpp
    splits a decode of separate streams into micro-batches of equal tokens per stream, and a job's tail
    in a micro-batch of its own moved its log-likelihood by up to 0.65 nat (Gemma-3, FLORES Hausa)."""
    results: list[tuple[float, bool]] = [(0.0, True)] * len(jobs)
    lengths = [padded(len(inputs)) for inputs, _ in jobs]
    for group in rounds(lengths, min(sequences, streams.sequences), streams.n_batch):
        streams.clear()
        entries: list[tuple[int, int, int, bool]] = []
        targets_read: list[tuple[int, int] | None] = []  # beside each entry: the (job, target) its logits score
        longest = max(lengths[job] for job in group)
        for stream, job in enumerate(group):
            inputs, targets = jobs[job]
            first_scored = len(inputs) - len(targets)
            entries += [(token, position, stream, position >= first_scored) for position, token in enumerate(inputs)]
            targets_read += [(job, targets[position - first_scored]) if position >= first_scored else None for position in range(len(inputs))]
            entries += [(inputs[-1], position, stream, False) for position in range(len(inputs), longest)]
            targets_read += [None] * (longest - len(inputs))
        scored: dict[int, list[tuple[float, bool]]] = {job: [] for job in group}
        for start in range(0, len(entries), streams.n_batch):
            streams.decode(entries[start : start + streams.n_batch])
            for index, read in enumerate(targets_read[start : start + streams.n_batch]):
                if read is not None:
                    scored[read[0]] += target_scores(streams.logits(index), [read[1]])
        for job, values in scored.items():
            results[job] = (float(np.sum([logprob for logprob, _ in values])), all(best for _, best in values))
    streams.clear()
    return results


class SharedContextScorer:
    """A llama.cpp context on ``llm``'s model whose KV cache, unified across ``sequences`` sequences, holds the
    longest request ``llm`` takes and a batch of ``n_batch`` tokens more."""

    def __init__(self, llm: Any, sequences: int, n_batch: int) -> None:
        import llama_cpp
        from llama_cpp import _internals as internals

        self.sequences, self.n_batch, self.n_vocab = sequences, n_batch, llm.n_vocab()
        self.ctx, memory = sequence_context(llm, sequences, unified=True, cells=int(llm.context_params.n_ctx) + n_batch)
        self.batch = internals.LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=sequences, verbose=False)
        self._clear = lambda: llama_cpp.llama_memory_clear(memory, True)
        self._remove = lambda sequence, start: llama_cpp.llama_memory_seq_rm(memory, sequence, start, -1)
        self._copy = lambda source, target, end: llama_cpp.llama_memory_seq_cp(memory, source, target, 0, end)

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()

    def score(self, jobs: Sequence[Job]) -> list[tuple[float, bool]]:
        """The summed log-probability of each job's targets, and whether every target was the argmax."""
        shared = shared_lengths(jobs)
        wanted = readers(jobs, shared)
        logprobs = [np.zeros(len(targets)) for _, targets in jobs]
        greedy = [np.ones(len(targets), dtype=bool) for _, targets in jobs]
        self._clear()
        for item in items(jobs, shared, self.sequences, spare_cells=self.n_batch):
            held, common = shared[item.start], trunk(jobs, shared, item)
            self._remove(0, held)  # sequence 0: the previous item's last member, cut to what this item shares with it
            for member in range(1, len(item)):
                self._copy(0, member, min(held, common))
            entries = [(item.start, position, 0, len(item)) for position in range(held, common)]
            for member, job in enumerate(item):
                start = max(common, held) if member == 0 else common
                entries += [(job, position, member, member + 1) for position in range(start, len(jobs[job][0]))]
            for chunk_start in range(0, len(entries), self.n_batch):
                chunk = entries[chunk_start : chunk_start + self.n_batch]
                self._decode(jobs, chunk, wanted)
                for index, (job, position, _, _) in enumerate(chunk):
                    for reader, target_index, logprob, best in self._read(jobs, index, wanted.get((job, position), [])):
                        logprobs[reader][target_index], greedy[reader][target_index] = logprob, best
            if len(item) > 1:  # the last member becomes sequence 0, alone in the cache
                for member in range(len(item) - 1):
                    self._remove(member, 0)
                self._copy(len(item) - 1, 0, -1)
                self._remove(len(item) - 1, 0)
        self._clear()
        return [(float(np.sum(values)), bool(flags.all())) for values, flags in zip(logprobs, greedy)]

    def _decode(self, jobs: Sequence[Job], chunk: list[tuple[int, int, int, int]], wanted: dict[Key, list[tuple[int, int]]]) -> None:
        """Decode (job, position, first sequence, end of sequences) entries; logits where a target is scored."""
        batch = self.batch.batch
        batch.n_tokens = len(chunk)
        for index, (job, position, first, end) in enumerate(chunk):
            batch.token[index], batch.pos[index], batch.n_seq_id[index] = jobs[job][0][position], position, end - first
            for slot, sequence in enumerate(range(first, end)):
                batch.seq_id[index][slot] = sequence
            batch.logits[index] = (job, position) in wanted
        self.ctx.decode(self.batch)

    def _read(self, jobs: Sequence[Job], index: int, readers: list[tuple[int, int]]) -> list[tuple[int, int, float, bool]]:
        """(job, target index, log-probability, is the argmax) for each reader of the logits at batch row ``index``."""
        if not readers:
            return []
        scores = target_scores(logits_row(self.ctx, index, self.n_vocab), [jobs[job][1][target_index] for job, target_index in readers])
        return [(job, target_index, logprob, best) for (job, target_index), (logprob, best) in zip(readers, scores)]
