"""`accessbench calibrate`: prefill and decode throughput of a loaded model, like llama-bench's pp512 / tg128.

Prefill (ppN): one forward pass over N random tokens per row. Decode (tgN): N tokens generated from
a one-token prompt, timed from the first new token to the last, so prefill is excluded. Each test
runs once to warm up, then ``repetitions`` times; the median is reported ± half the range.

Decoding reads every weight once per step whatever the batch, so with memory bandwidth B and
weights of W bytes a batch of b cannot decode faster than b × B / W tokens per second; the share
of that bound reached says how close the run is to what the memory allows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rich.table import Table

from bench.errors import UserError
from bench.models.base import ModelInfo
from bench.models.hf import FirstTokenClock, HFBackend


@dataclass(frozen=True)
class Measurement:
    test: str  # pp512, tg128
    batch: int
    tokens_per_second: float  # median over repetitions
    spread: float  # half the range over repetitions
    runs: tuple[float, ...]
    bound: float | None = None  # bandwidth bound, decode only
    share_of_bound: float | None = None


def measure_read_bandwidth_gbs(device: str = "cpu", size_bytes: int = 2**30, repetitions: int = 5) -> float:
    """Memory read bandwidth in GB/s: the fastest of ``repetitions`` sums over a buffer far larger than any cache.

    Summing streams every byte once, as a decode step streams every weight; other processes
    only ever slow a repetition down, so the fastest is the machine's figure.
    """
    buffer = torch.ones(size_bytes // 4, dtype=torch.float32, device=device)
    timings = []
    for _ in range(repetitions + 1):  # the first touches the pages
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        buffer.sum().item()
        timings.append(time.perf_counter() - started)
    return size_bytes / min(timings[1:]) / 1e9


def weight_bytes(model: Any) -> int:
    return int(sum(parameter.numel() * parameter.element_size() for parameter in model.parameters()))


def _synchronise(backend: HFBackend) -> None:
    if backend.input_device.type == "cuda":
        torch.cuda.synchronize(backend.input_device)


def _prefill_seconds(backend: HFBackend, batch: int, tokens: int, generator: torch.Generator) -> float:
    ids = torch.randint(0, backend.vocab_size, (batch, tokens), generator=generator).to(backend.input_device)
    kwargs = {"logits_to_keep": 1} if backend._keeps_logits else {}
    _synchronise(backend)
    started = time.perf_counter()
    with torch.inference_mode():
        backend.model(input_ids=ids, **kwargs)
    _synchronise(backend)
    return time.perf_counter() - started


def _decode_seconds(backend: HFBackend, batch: int, tokens: int) -> float:
    from transformers import GenerationConfig, StoppingCriteriaList

    ids = torch.full((batch, 1), backend.prefix_token_id, dtype=torch.long, device=backend.input_device)
    config = GenerationConfig(
        max_new_tokens=tokens,
        min_new_tokens=tokens,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        pad_token_id=backend.pad_token_id,
        eos_token_id=backend._eos_ids(),
    )
    clock = FirstTokenClock(synchronise=backend.input_device.type == "cuda")
    with torch.inference_mode():
        backend.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config, stopping_criteria=StoppingCriteriaList([clock]))
    _synchronise(backend)
    ended = time.perf_counter()
    assert clock.first is not None
    return ended - clock.first


def calibrate(
    backend: HFBackend,
    batches: list[int],
    prompt_tokens: int = 512,
    gen_tokens: int = 128,
    repetitions: int = 3,
    bandwidth_gbs: float | None = None,
) -> list[Measurement]:
    """ppN and tgN at each batch size: one warm-up, then ``repetitions`` timed runs each."""
    if prompt_tokens > backend.max_length:
        raise UserError(f"--prompt-tokens {prompt_tokens} is longer than the model's context of {backend.max_length} tokens; use at most {backend.max_length}")
    generator = torch.Generator().manual_seed(0)
    weights = weight_bytes(backend.model)
    results = []
    for batch in batches:
        tests = [
            (f"pp{prompt_tokens}", lambda batch=batch: batch * prompt_tokens / _prefill_seconds(backend, batch, prompt_tokens, generator)),
            (f"tg{gen_tokens}", lambda batch=batch: batch * (gen_tokens - 1) / _decode_seconds(backend, batch, gen_tokens)),
        ]
        for name, run in tests:
            run()  # warm-up
            runs = tuple(run() for _ in range(repetitions))
            median = float(np.median(runs))
            bound = batch * bandwidth_gbs * 1e9 / weights if bandwidth_gbs and name.startswith("tg") else None
            results.append(Measurement(name, batch, median, (max(runs) - min(runs)) / 2, runs, bound, median / bound if bound else None))
    return results


def calibration_table(info: ModelInfo, rows: list[Measurement], bandwidth_gbs: float | None, bandwidth_source: str = "given") -> Table:
    bound_note = (
        f"bandwidth bound at {bandwidth_gbs:g} GB/s ({bandwidth_source}): batch × bandwidth ÷ weight bytes"
        if bandwidth_gbs
        else "no memory bandwidth: no bound shown"
    )
    table = Table(
        title=f"Throughput of {info.ref} ({info.parameters / 1e6:,.0f}M parameters, {info.dtype}, {info.device})",
        caption=f"median ± half the range over repetitions; pp = prefill, tg = decode (excludes the first token)\n{bound_note}",
        caption_justify="left",
    )
    for heading in ("test", "batch", "tokens / s", "bound tokens / s", "share of bound"):
        table.add_column(heading, justify="left" if heading == "test" else "right")
    for row in rows:
        table.add_row(
            row.test,
            str(row.batch),
            f"{row.tokens_per_second:,.1f} ± {row.spread:,.1f}",
            "–" if row.bound is None else f"{row.bound:,.0f}",
            "–" if row.share_of_bound is None else f"{row.share_of_bound:.0%}",
        )
    return table
