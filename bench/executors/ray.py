"""The Ray executor: each unit of work (one model's cells) is a Ray task on a cluster's nodes.

The plan is made once, on the driver. Each unit asks Ray for what its model needs: a CPU, a GPU
when the model is placed on one, the memory its preflight estimated, and, when its cells measure
cost, the node's one ``accessbench_meter``, so no two measuring units share a machine. A unit
that no node can hold is refused before anything runs. Workers append through the same results
store into the run folder, which every node sees at the same path (``docs/scale-out.md``); a unit
reads what is pending from it, so a unit Ray retries after its worker died computes only what is
missing. Workers post what they do to a small actor; the driver shows it per node.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError

from bench.errors import UserError
from bench.models.memory import gib
from bench.models.threads import use_cores
from bench.results import MANIFEST
from bench.run_lock import RunLock
from bench.worker import BudgetReached, CellResult, Events, RunJob, Worker, WorkUnit, evaluate_elsewhere

METER = "accessbench_meter"  # a custom resource, one per node: held by a unit while it measures cost
POLL_SECONDS = 0.5  # how often the driver reads what workers posted
UNIT_LOCK_SECONDS = 120.0  # how long a unit waits for a worker of a killed driver to finish dying
START_NODES = f"""start each node with `ray start ... --resources '{{"{METER}": 1}}'`"""


class FolderNotVisible(UserError):
    """A node that cannot see the run folder (the results store is one shared folder)."""


@dataclass(frozen=True)
class Request:
    """What one unit asks of a node."""

    cpus: float
    gpus: int
    memory: int  # bytes: the preflight's estimate
    meter: bool  # its cells measure cost, so it runs alone on its node

    @classmethod
    def of(cls, unit: WorkUnit, cpus: float) -> Request:
        checked = unit.preflight
        device = str(checked.resolved.get("device", "")) if checked is not None else ""
        return cls(
            cpus=cpus,
            gpus=1 if device.startswith("cuda") else 0,
            memory=checked.memory_bytes if checked is not None else 0,
            meter=any(cell.task.task_kind.priced for cell in unit.cells),
        )

    def options(self) -> dict[str, Any]:
        """Ray task options declaring these resources."""
        options: dict[str, Any] = {"num_cpus": self.cpus, "num_gpus": self.gpus, "resources": {METER: 1} if self.meter else {}}
        if self.memory:
            options["memory"] = self.memory
        return options

    def fits(self, resources: Mapping[str, float]) -> bool:
        """Whether a node with these total resources can ever take the unit."""
        return (
            resources.get("CPU", 0) >= self.cpus
            and resources.get("GPU", 0) >= self.gpus
            and resources.get("memory", 0) >= self.memory
            and (not self.meter or resources.get(METER, 0) >= 1)
        )

    def describe(self) -> str:
        needs = [f"{self.cpus:g} CPU", f"{gib(self.memory)} of memory"]
        needs += [f"{self.gpus} GPU"] if self.gpus else []
        needs += [f"the node's {METER} (it measures cost)"] if self.meter else []
        return ", ".join(needs)


def offers(node: Mapping[str, Any]) -> str:
    """'nodeA: 2 CPU, 0.4 GiB of memory, no GPU, no accessbench_meter' for a refusal that names every node."""
    resources = node["Resources"]
    gpus = f"{resources['GPU']:g} GPU" if resources.get("GPU") else "no GPU"
    meter = METER if resources.get(METER) else f"no {METER}"
    return f"{node['NodeName']}: {resources.get('CPU', 0):g} CPU, {gib(resources.get('memory', 0))} of memory, {gpus}, {meter}"


def placements(units: Sequence[WorkUnit], requests: Sequence[Request], nodes: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """The nodes that can take each unit; a UserError naming the unit, its needs and every node when none can."""
    found = []
    for unit, request in zip(units, requests):
        able = [str(node["NodeName"]) for node in nodes if request.fits(node["Resources"])]
        if not able:
            hint = f"; {START_NODES}" if request.meter and not any(node["Resources"].get(METER) for node in nodes) else ""
            raise UserError(
                f"no node of the Ray cluster can take {unit.title}: it needs {request.describe()}; the nodes offer {'; '.join(offers(node) for node in nodes)}{hint}"
            )
        found.append(able)
    return found


class Board:
    """The actor workers post their events to (node, unit's slug, kind, value); the driver takes them."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, str, str, Any]] = []

    def post(self, event: tuple[str, str, str, Any]) -> None:
        self.posted.append(event)

    def take(self) -> list[tuple[str, str, str, Any]]:
        posted, self.posted = self.posted, []
        return posted

    def ping(self) -> None:
        """Answered once every earlier call of the same caller is done."""


class Posting:
    """A worker's events, posted to the driver's board (calls from one worker arrive in order)."""

    def __init__(self, board: Any, node: str, unit: str) -> None:
        self.board, self.node, self.unit = board, node, unit

    def _post(self, kind: str, value: Any) -> None:
        self.board.post.remote((self.node, self.unit, kind, value))

    def loading(self, title: str) -> None:
        self._post("loading", title)

    def cell_started(self, label: str) -> None:
        self._post("started", label)

    def samples_done(self, count: int) -> None:
        self._post("samples", count)

    def cell_finished(self, result: CellResult) -> None:
        self._post("finished", result)

    def note(self, text: str) -> None:
        self._post("note", text)

    def flush(self) -> None:
        """Wait until the board holds everything posted so far."""
        ray.get(self.board.ping.remote())


def this_node() -> tuple[str, float]:
    """This worker's node as the cluster names it (``ray start --node-name``; by default its IP address), and the CPUs it declares."""
    here = ray.get_runtime_context().get_node_id()
    found = next((node for node in ray.nodes() if node["NodeID"] == here), None)
    return (str(found["NodeName"]), float(found["Resources"].get("CPU", 1))) if found else (socket.gethostname(), 1.0)


def evaluate_on_node(unit: WorkUnit, job: RunJob, board: Any) -> list[CellResult]:
    """A Ray task: evaluate one unit on this node, into the shared run folder, with the node's CPUs
    (a measuring unit holds the node's meter, so it runs there alone)."""
    node, cpus = this_node()
    if not (job.run_dir / MANIFEST).is_file():
        raise FolderNotVisible(
            f"node {node} ({socket.gethostname()}) cannot see the run folder {job.run_dir}; put --output on a folder every node mounts at the same path"
        )
    use_cores(cpus)
    events = Posting(board, node, unit.slug)
    folder = job.run_dir / unit.slug
    folder.mkdir(exist_ok=True)
    try:
        with RunLock(folder, wait_seconds=UNIT_LOCK_SECONDS):  # one process per unit, whatever Ray or a killed driver left behind
            return evaluate_elsewhere(unit, job, "ray worker", events, node=node)
    finally:
        events.flush()


class ClusterProgress:
    """Cells done / running / queued per node, from what workers posted, shown through the runner's events."""

    def __init__(self, units: Sequence[WorkUnit], events: Events) -> None:
        self.events = events
        self.titles = {unit.slug: unit.title for unit in units}
        self.queued = {cell.label for unit in units for cell in unit.cells}
        self.running: dict[str, tuple[str, str]] = {}  # node -> (unit's slug, cell label)
        self.done: Counter[str] = Counter()
        self.where: dict[str, str] = {}  # unit's slug -> the node it last ran on

    def take(self, posted: Sequence[tuple[str, str, str, Any]]) -> None:
        for node, unit, kind, value in posted:
            if kind == "loading":
                if unit in self.where:
                    self.events.note(f"{self.titles[unit]} is retried on {node}: its worker on {self.where[unit]} stopped (finished samples are kept)")
                self.running = {name: entry for name, entry in self.running.items() if entry[0] != unit}
                self.where[unit] = node
                self.events.loading(f"{value} on {node}")
            elif kind == "started":
                self.where[unit] = node
                self.queued.discard(value)
                self.running[node] = (unit, value)
                self._show()
            elif kind == "samples":
                self.events.samples_done(value)
            elif kind == "finished":
                self.running.pop(node, None)
                self.done[node] += 1
                self.events.cell_finished(replace(value, label=f"{value.label} on {node}"))
                self._show()
            elif kind == "note":
                self.events.note(f"{node}: {value}")

    def _show(self) -> None:
        nodes = sorted(set(self.done) | set(self.running))
        parts = [f"{node}: {self.done[node]} done" + (f", running {self.running[node][1]}" if node in self.running else "") for node in nodes]
        self.events.cell_started(" · ".join([*parts, f"{len(self.queued)} cells queued"]))

    def failed(self, unit: WorkUnit, reason: str) -> str:
        line = f"{unit.title} on {self.where.get(unit.slug, 'no node yet')}: {reason}"
        self.events.note(f"failed: {line}")
        return line


def one_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


class RayExecutor:
    """Units as Ray tasks on a cluster (``address``: ``auto``, ``HOST:PORT``, or None for a local one)."""

    name = "ray"

    def __init__(self, address: str | None = None, max_retries: int = 3, cpus_per_unit: float = 1) -> None:
        self.address, self.max_retries, self.cpus_per_unit = address, max_retries, cpus_per_unit

    def run(self, units: Sequence[WorkUnit], job: RunJob, here: Worker) -> list[CellResult]:
        job = replace(job, run_dir=job.run_dir.resolve())  # the same path on every node
        started = self._connect()
        try:
            return self._run(units, job, here.events)
        finally:
            if started:
                ray.shutdown()

    def _connect(self) -> bool:
        """Join the cluster (or start one on this machine); whether this call did, so it leaves it too."""
        if ray.is_initialized():
            return False
        address = self.address or os.environ.get("RAY_ADDRESS")
        try:
            if address is None:  # a cluster of this machine alone: one node, which measures
                ray.init(address="local", resources={METER: 1}, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
            else:
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise UserError(
                f"cannot join the Ray cluster at {address or 'this machine'} ({one_line(error)}); start one with `ray start --head`, "
                "or leave out --address to run on this machine alone"
            ) from None
        return True

    def _run(self, units: Sequence[WorkUnit], job: RunJob, events: Events) -> list[CellResult]:
        requests = [Request.of(unit, self.cpus_per_unit) for unit in units]
        nodes = [node for node in ray.nodes() if node["Alive"]]
        for unit, able in zip(units, placements(units, requests, nodes)):
            if len(able) < len(nodes):
                events.note(f"{unit.title} fits only {', '.join(able)} ({len(able)} of {len(nodes)} nodes)")
        progress = ClusterProgress(units, events)
        board: Any = ray.remote(num_cpus=0)(Board).remote()
        task = ray.remote(evaluate_on_node)
        submitted = {
            task.options(**request.options(), max_retries=self.max_retries, name=f"accessbench {unit.title}").remote(unit, job, board): unit
            for unit, request in zip(units, requests)
        }
        remaining, results, failures = list(submitted), [], []
        try:
            while remaining:
                finished, remaining = ray.wait(remaining, num_returns=1, timeout=POLL_SECONDS)
                progress.take(ray.get(board.take.remote()))
                for ref in finished:
                    try:
                        results.extend(ray.get(ref))
                    except RayTaskError as error:
                        cause = error.cause
                        if isinstance(cause, FolderNotVisible | BudgetReached):
                            raise cause from None
                        failures.append(progress.failed(submitted[ref], one_line(cause) if cause is not None else one_line(error)))
                    except RayError as error:  # the worker or its node died more often than max_retries
                        failures.append(progress.failed(submitted[ref], f"{type(error).__name__} after {self.max_retries} retries"))
            progress.take(ray.get(board.take.remote()))
        except BaseException:
            for ref in remaining:
                ray.cancel(ref, force=True)
            raise
        if failures:
            raise UserError(
                f"{len(failures)} of {len(units)} models failed on the cluster (first: {failures[0]}); finished samples are saved in {job.run_dir}; "
                "rerun the same command to resume"
            )
        return results
