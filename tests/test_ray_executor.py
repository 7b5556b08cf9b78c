"""The Ray executor on a real two-node Ray cluster on this machine (loopback), and on a plain local `ray.init()`.

One cluster serves the module: a head node too small (in declared memory) for the larger of the
two models, and a second node that fits both; each offers one `accessbench_meter`. The sweep's
scores equal the inline executor's bit for bit, with a worker killed by `kill -9` mid-sweep; a
driver killed mid-sweep resumes on the rerun; both end in complete cells with no duplicate sample.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from conftest import REPO, run_cli, save_random_model

from bench import results
from bench.config import RunConfig, parse_config
from bench.errors import UserError
from bench.executors import get_executor
from bench.models.base import Preflight
from bench.models.threads import physical_cores
from bench.report.collect import collect
from bench.report.site import write_site
from bench.runner import run
from bench.worker import CellResult

SMALL, BIG = "abnode-small", "abnode-big"
SMALL_MEMORY = 325 * 10**6  # the tiny model's estimate (~315 MB) fits; the larger one's (~334 MB) does not
BIG_MEMORY = 2 * 10**9
PROFILES = {SMALL: "laptop-cpu", BIG: "desktop-gpu-8gb"}
TASKS = ["sib200", "mgsm_symbolic_bpb", "mgsm_symbolic_tax"]  # multiple choice, rolling log-likelihood, token counts (unmetered)
LANGUAGES = ["eng", "hau"]
LIMIT = 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ray_start(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run([str(Path(sys.executable).parent / "ray"), "start", *args], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]


def cluster_processes(temp_dir: str) -> list[psutil.Process]:
    """This cluster's processes: those naming its temp folder, and everything they started."""
    found: dict[int, psutil.Process] = {}
    for process in psutil.process_iter(["cmdline"]):
        if any(temp_dir in part for part in process.info["cmdline"] or []):
            found[process.pid] = process
            with contextlib.suppress(psutil.Error):
                found.update({child.pid: child for child in process.children(recursive=True)})
    found.pop(os.getpid(), None)
    return list(found.values())


def stop_cluster(temp_dir: str) -> None:
    """Stop this cluster's processes by their ids (never `ray stop`, which stops every Ray on the machine)."""
    processes = cluster_processes(temp_dir)
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=3)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A head node and a second node on loopback with different resources; yields the address."""
    if importlib.util.find_spec("ray") is None:
        pytest.fail("ray is not installed; install the ray extra (`python install.py test` includes it)")
    temp_dir = tempfile.mkdtemp(prefix="abray", dir="/tmp")  # short: Ray's socket paths live under it
    # Ray turns token authentication on where ~/.ray/auth_token exists, and a joining node then needs
    # it too: a loopback test cluster goes without (as do the drivers this module starts).
    patch = pytest.MonkeyPatch()
    patch.setenv("RAY_AUTH_MODE", "disabled")
    patch.delenv("RAY_ADDRESS", raising=False)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    port = free_port()
    meter = json.dumps({"accessbench_meter": 1})
    cores = str(physical_cores())  # a unit computes with its node's CPUs: as many threads as inline here
    common = ["--num-cpus", cores, "--object-store-memory", str(80 * 10**6), "--node-ip-address", "127.0.0.1", "--resources", meter, "--disable-usage-stats"]
    try:
        ray_start(
            ["--head", "--port", str(port), "--temp-dir", temp_dir, "--include-dashboard", "false", "--dashboard-port", str(free_port())]
            + ["--node-name", SMALL, "--memory", str(SMALL_MEMORY), *common],
            env,
        )
        ray_start(["--address", f"127.0.0.1:{port}", "--node-name", BIG, "--memory", str(BIG_MEMORY), *common], env)
        yield f"127.0.0.1:{port}"
    finally:
        stop_cluster(temp_dir)
        patch.undo()


@pytest.fixture(scope="module")
def larger_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Llama of ~4M parameters (the tiny model's tokenizer): ~334 MB by the preflight's estimate."""
    return save_random_model(tmp_path_factory.mktemp("larger-llama"), "llama", hidden_size=256, intermediate_size=1024, layers=4)


def sweep(tiny: Path, larger: Path, output: Path) -> dict[str, Any]:
    """2 models × 3 tasks × 2 languages, each machine priced with its own profile."""
    return {
        "name": "sweep",
        "models": [{"ref": str(tiny), "device": "cpu", "backend": "hf"}, {"ref": str(larger), "device": "cpu", "backend": "hf", "batch_size": 1}],
        "tasks": TASKS,
        "languages": LANGUAGES,
        "limit": LIMIT,
        "output": str(output),
        "cost": {"nodes": PROFILES},
    }


def config(data: dict[str, Any]) -> RunConfig:
    return parse_config(data, "test")


def scores(run_dir: Path) -> dict[str, Any]:
    """Every cell's scores with their intervals, by its folder (model, task, language)."""
    return {str(path.parent.relative_to(run_dir)): json.loads(path.read_text())["metrics"] for path in run_dir.glob("*/*/*/summary.json")}


def assert_complete_without_duplicates(run_dir: Path, cells: int) -> None:
    """Every cell holds each of its samples on exactly one line of its file."""
    files = sorted(run_dir.glob("*/*/*/samples.jsonl"))
    assert len(files) == cells
    for file in files:
        ids = [json.loads(line)["doc_id"] for line in file.read_text().splitlines()]
        assert len(ids) == len(set(ids)) == LIMIT, file


@pytest.fixture(scope="module")
def inline_scores(tiny_model_dir: Path, larger_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    outcome = run(config(sweep(tiny_model_dir, larger_model_dir, tmp_path_factory.mktemp("inline"))))
    return scores(outcome.run_dir)


def test_a_sweep_on_two_nodes_equals_inline_with_a_worker_killed_and_each_machine_is_its_own(
    cluster: str, tiny_model_dir: Path, larger_model_dir: Path, inline_scores: dict[str, Any], tmp_path: Path
) -> None:
    settings = config(sweep(tiny_model_dir, larger_model_dir, tmp_path))
    run_dir = tmp_path / settings.run_id()
    killed: list[int] = []

    def kill_the_larger_models_worker() -> None:
        """kill -9 the worker evaluating the larger model once its first cell's samples are on disk."""
        deadline = time.monotonic() + 240
        while not killed and time.monotonic() < deadline:
            for path in (run_dir / "invocations").glob("*.json"):
                with contextlib.suppress(ValueError, OSError):
                    record = json.loads(path.read_text())
                    slugs = list(record.get("models") or {})
                    larger = record.get("role") == "ray worker" and record["status"] == "running" and slugs and "larger" in slugs[0]
                    if larger and any((run_dir / slugs[0]).glob("*/*/samples.jsonl")):
                        os.kill(record["pid"], signal.SIGKILL)
                        killed.append(record["pid"])
                        return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_the_larger_models_worker, daemon=True)
    killer.start()
    outcome = run(settings, executor=get_executor("ray", address=cluster))
    killer.join()
    assert killed, "the larger model's worker was never seen running"
    assert len(inline_scores) == 12 and scores(outcome.run_dir) == inline_scores  # bit for bit
    assert_complete_without_duplicates(outcome.run_dir, 12)
    records = (results.read_manifest(outcome.run_dir) or {})["invocations"]
    [crashed] = [record for record in records if record["pid"] == killed[0] and "larger" in next(iter(record.get("models") or {""}))]
    assert crashed["status"].startswith("crashed")  # its crash watcher said so
    workers = [record for record in records if record["role"] == "ray worker" and record["status"] == "finished"]
    assert sorted(record["node"] for record in workers if "larger" in next(iter(record["models"]))) == [BIG]  # retried where it fits
    assert {record["cost"]["hardware_profile"] for record in workers} == {PROFILES[record["node"]] for record in workers}
    for summary in outcome.summaries:
        [node] = summary["nodes"]
        assert summary["cost"]["hardware_profile"] == PROFILES[node]  # priced as the machine that ran it
        if summary["model"] == str(larger_model_dir):
            assert node == BIG  # the head cannot hold it
    collection = collect([outcome.run_dir])  # the report names the machine behind each number
    rows = collection.rows()
    assert {row["machine"] for row in rows if row["model_ref"] == str(larger_model_dir)} == {BIG}
    assert all(row["hardware_profile"] == PROFILES[row["machine"]] for row in rows)
    site = unescape(write_site(collection, tmp_path / "site").read_text(encoding="utf-8"))
    assert f"{BIG}: " in site and f"priced as {PROFILES[BIG]}" in site


def test_the_driver_killed_mid_sweep_resumes_on_rerun(
    cluster: str, tiny_model_dir: Path, larger_model_dir: Path, inline_scores: dict[str, Any], tmp_path: Path
) -> None:
    data = sweep(tiny_model_dir, larger_model_dir, tmp_path / "out")
    config_file = tmp_path / "sweep.yaml"
    config_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    run_dir = tmp_path / "out" / config(data).run_id()
    command = [sys.executable, "-m", "bench", "run", str(config_file), "--executor", "ray", "--address", cluster]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    driver = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not any(run_dir.glob("*/*/*/summary.json")) and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.05)
    driver.kill()
    driver.wait()
    before = results.count_saved_samples(run_dir)
    assert 0 < before < 36
    rerun = run(config(data), executor=get_executor("ray", address=cluster))
    assert 0 < rerun.computed_samples <= 36 - before  # resumed: what was saved is not computed again
    assert scores(run_dir) == inline_scores
    assert_complete_without_duplicates(run_dir, 12)
    drivers = [record for record in (results.read_manifest(run_dir) or {})["invocations"] if record["role"] == "ray"]
    assert len(drivers) == 2 and drivers[0]["status"].startswith(("crashed", "killed")) and drivers[1]["status"] == "finished"


def test_a_model_no_node_can_hold_is_refused_before_anything_runs(cluster: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    from bench.executors.ray import Request

    settings = config({**sweep(tiny_model_dir, tiny_model_dir, tmp_path), "models": [{"ref": str(tiny_model_dir), "device": "cpu", "backend": "hf"}]})
    huge = Request(cpus=1, gpus=0, memory=BIG_MEMORY + 1, meter=True)
    assert not huge.fits({"CPU": 1, "memory": BIG_MEMORY, "accessbench_meter": 1})
    with pytest.MonkeyPatch.context() as patch:  # the plan's estimate, as a model of 2 GB would have it
        from bench import plan

        real = plan.preflight
        patch.setattr(plan, "preflight", lambda model: Preflight(real(model).source, BIG_MEMORY + 1, {"device": "cpu"}))
        with pytest.raises(
            UserError, match=f"no node of the Ray cluster can take .*: it needs 1 CPU, 1.9 GiB of memory.*; the nodes offer .*{BIG}: \\d+ CPU, 1.9 GiB"
        ):
            run(settings, executor=get_executor("ray", address=cluster))
    assert not any((tmp_path / settings.run_id()).glob("*/*/*/samples.jsonl"))


def test_a_plain_local_ray_init_run_equals_inline(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the local cluster's workers inherit it
    small = {"name": "local", "models": [{"ref": str(tiny_model_dir), "device": "cpu", "backend": "hf"}], "tasks": ["mgsm_symbolic_bpb"], "languages": ["hau"]}
    inline = run(config({**small, "limit": LIMIT, "output": str(tmp_path / "inline")}))
    local = run(config({**small, "limit": LIMIT, "output": str(tmp_path / "ray")}), executor=get_executor("ray"))
    assert local.computed_samples == LIMIT and scores(local.run_dir) == scores(inline.run_dir)
    [worker] = [record for record in (results.read_manifest(local.run_dir) or {})["invocations"] if record["role"] == "ray worker"]
    assert worker["status"] == "finished"


def test_a_node_that_cannot_see_the_run_folder_is_refused_in_one_line(cluster: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from bench.plan import make_plan
    from bench.results import Invocation
    from bench.worker import Quiet, RunJob, Worker, WorkUnit

    settings = config({**sweep(tiny_model_dir, tiny_model_dir, tmp_path), "models": [{"ref": str(tiny_model_dir), "device": "cpu", "backend": "hf"}]})
    plan = make_plan(settings)
    unit = WorkUnit(settings.models[0], plan.cells, None, next(iter(plan.preflights.values())))
    elsewhere = tmp_path / "only-on-the-driver"  # a run folder without its manifest: what a node without the shared folder sees
    job = RunJob(settings, settings.run_id(), settings.fingerprint(), plan.cost, elsewhere)
    here = Worker(replace(job, run_dir=tmp_path), Invocation(tmp_path, {"role": "test"}), Quiet())
    with pytest.raises(
        UserError, match=r"^node abnode-(small|big) \(.+\) cannot see the run folder .*only-on-the-driver; put --output on a folder every node mounts"
    ):
        get_executor("ray", address=cluster).run([unit], job, here)


def test_address_without_the_ray_executor_is_a_one_line_error(tiny_model_dir: Path) -> None:
    cli = run_cli("run", "-m", str(tiny_model_dir), "-t", "mgsm_symbolic_tax", "-l", "eng", "--address", "auto")
    assert cli.returncode == 2 and cli.stderr.strip().splitlines() == ["error: --address names a Ray cluster; use it with --executor ray"]


class Recorded:
    """Events as the driver's display receives them."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def loading(self, title: str) -> None:
        self.lines.append(f"loading {title}")

    def cell_started(self, label: str) -> None:
        self.lines.append(label)

    def samples_done(self, count: int) -> None:
        self.lines.append(f"+{count}")

    def cell_finished(self, result: CellResult) -> None:
        self.lines.append(f"finished {result.label}")

    def note(self, text: str) -> None:
        self.lines.append(f"note: {text}")


def test_progress_shows_cells_per_node_retries_and_failures(tiny_model_dir: Path, tmp_path: Path) -> None:
    from bench.executors.ray import ClusterProgress
    from bench.plan import make_plan
    from bench.worker import WorkUnit

    settings = config({**sweep(tiny_model_dir, tiny_model_dir, tmp_path), "models": [{"ref": str(tiny_model_dir), "device": "cpu", "backend": "hf"}]})
    cells = make_plan(settings).cells
    unit = WorkUnit(settings.models[0], cells)
    shown = Recorded()
    progress = ClusterProgress([unit], shown)
    first, second = cells[0], cells[1]
    result = CellResult(first.key, first.label, {}, LIMIT, 1.0)
    progress.take([(BIG, unit.slug, "loading", unit.title), (BIG, unit.slug, "started", first.label), (BIG, unit.slug, "samples", LIMIT)])
    progress.take([(BIG, unit.slug, "finished", result), (BIG, unit.slug, "started", second.label)])
    progress.take([(SMALL, unit.slug, "loading", unit.title)])  # its worker died: Ray runs it again elsewhere
    assert shown.lines[:4] == [
        f"loading {unit.title} on {BIG}",
        f"{BIG}: 0 done, running {first.label} · 5 cells queued",
        f"+{LIMIT}",
        f"finished {first.label} on {BIG}",
    ]
    assert shown.lines[4:6] == [f"{BIG}: 1 done · 5 cells queued", f"{BIG}: 1 done, running {second.label} · 4 cells queued"]
    assert shown.lines[6] == f"note: {unit.title} is retried on {SMALL}: its worker on {BIG} stopped (finished samples are kept)"
    assert progress.failed(unit, "model too big") == f"{unit.title} on {SMALL}: model too big"
    assert shown.lines[-1] == f"note: failed: {unit.title} on {SMALL}: model too big"
