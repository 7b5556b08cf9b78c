"""What a process evaluating a run does with one unit of work (one model's cells): load the model
once, evaluate the pending docs of each cell in checkpoint chunks, append the samples, and write
the cell's summary.

A unit is idempotent: what is pending is read from the results store when the unit starts, so
a unit run again (a resumed run, a retried worker) computes only what is missing. Every process
that evaluates keeps its own invocation record (``bench.results.Invocation``), closed by
``recorded`` however the process's work ends.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from bench import __version__
from bench.config import ModelConfig, RunConfig
from bench.cost.meter import Meter
from bench.cost.pricing import cell_cost
from bench.cost.profiles import CostSettings
from bench.crash_watch import CrashWatch
from bench.environment import hardware, package_versions
from bench.evaluation import evaluate_docs, generation_params, summarize
from bench.kinds import TaskKind
from bench.models.base import Backend, Preflight, auto_batch_size
from bench.models.registry import load_backend
from bench.plan import Cell
from bench.records import RESULTS_SCHEMA, Summary
from bench.results import CellKey, Invocation, RunStore, is_no_space
from bench.tasks import Doc

BackendFactory = Callable[[ModelConfig, RunConfig], Backend]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def load_for_run(model: ModelConfig, config: RunConfig) -> Backend:
    """The backend for one model entry, with the run's batch size and seed."""
    return load_backend(model, config.batch_size_for(model), config.seed)


@dataclass(frozen=True)
class RunJob:
    """What every process evaluating a run needs, fixed once when the run starts."""

    config: RunConfig
    run_id: str
    config_hash: str  # the run fingerprint, computed once per run
    cost: CostSettings
    run_dir: Path
    backend_factory: BackendFactory = load_for_run


@dataclass
class WorkUnit:
    """One model's cells: whoever evaluates it loads the model once."""

    model: ModelConfig
    cells: list[Cell]
    recorded_info: dict[str, Any] | None = None  # the backend information an earlier invocation recorded
    preflight: Preflight | None = None  # what the plan's check found (device, memory estimate): what an executor asks a machine for

    @property
    def title(self) -> str:
        return self.cells[0].model_title

    @property
    def slug(self) -> str:
        """The model's folder in the run folder (unique in a run, unlike its title)."""
        return self.cells[0].model_slug


@dataclass
class CellResult:
    """A cell evaluated and summarised."""

    key: CellKey
    label: str
    summary: dict[str, Any]
    computed: int  # samples computed by this unit
    seconds: float


class Events(Protocol):
    """What a unit reports while it runs (the driver's progress display)."""

    def loading(self, title: str) -> None: ...
    def cell_started(self, label: str) -> None: ...
    def samples_done(self, count: int) -> None: ...
    def cell_finished(self, result: CellResult) -> None: ...
    def note(self, text: str) -> None: ...


class BudgetReached(Exception):
    """What paid APIs charged this process reached ``max_usd``."""

    def __init__(self, spent: float, limit: float) -> None:
        super().__init__(f"spent ${spent:.4f} of ${limit:g}")
        self.spent, self.limit = spent, limit


def cell_summary(cell: Cell, job: RunJob, samples: list[dict[str, Any]], model_info: dict[str, Any] | None) -> dict[str, Any]:
    """A cell's summary from all its samples (so a resumed run gets the same), priced as the machine that computed most of them."""
    ordered = sorted(samples, key=lambda sample: sample["doc_id"])
    nodes = Counter(str(sample["node"]) for sample in ordered if sample.get("node"))
    machine = nodes.most_common(1)[0][0] if nodes else None
    summary = {
        "schema_version": RESULTS_SCHEMA,
        "written_by": __version__,
        "run_id": job.run_id,
        "config_hash": job.config_hash,
        "model": cell.model.ref,
        "model_title": cell.model_title,
        "model_info": model_info,
        "task": cell.task.name,
        "task_kind": cell.task.kind,
        "language": cell.language,
        "nodes": dict(nodes),  # the machines that computed its samples
        **summarize(cell.task, ordered, job.config.seed),
        "cost": cell_cost(ordered, job.cost.for_node(machine), [cell.model_title, cell.model.ref], model_info),
        "written_at": now(),
    }
    return Summary.checked(summary)


def chunk_size(config: RunConfig, model: ModelConfig, device: str, kind: TaskKind) -> int:
    """Items per checkpoint, from the config alone (never from a backend's out-of-memory back-off),
    so a resumed run chunks exactly as an uninterrupted one; a generating kind's chunk is one batch."""
    return auto_batch_size(config.batch_size_for(model), device) * (1 if kind.generates else 4)


def chunks(docs: list[Doc], size: int) -> list[list[Doc]]:
    """Fixed chunks over the full, length-sorted doc list, so a resumed run batches exactly as before."""
    ordered = sorted(docs, key=lambda doc: (-len(doc.prompt or doc.text or ""), doc.id))
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


@dataclass
class Worker:
    """One process evaluating units of a run, under its own invocation record and crash watcher;
    ``node`` names its machine in every sample it computes."""

    job: RunJob
    invocation: Invocation
    events: Events
    watch: CrashWatch | None = None
    node: str = field(default_factory=socket.gethostname)
    spent_usd: float = 0.0  # what paid APIs charged this process so far
    store: RunStore = field(init=False)

    def __post_init__(self) -> None:
        self.store = RunStore(self.job.run_dir)

    def evaluate(self, unit: WorkUnit) -> list[CellResult]:
        """Evaluate the unit's pending docs and (re)write every one of its cells' summaries (cost
        settings may have changed). Raises BudgetReached, after summarising what is finished, once
        this process has spent ``max_usd``.
        """
        model_info = unit.recorded_info
        finished = {cell.key: {sample["doc_id"]: sample for sample in self.store.finished_samples(cell.key)} for cell in unit.cells}
        pending = {cell.key: [doc for doc in cell.docs if doc.id not in finished[cell.key]] for cell in unit.cells}
        backend, meter, results = None, None, []
        try:
            if any(pending.values()):
                self.events.loading(unit.title)
                backend = self.job.backend_factory(unit.model, self.job.config)
                warm_up = getattr(backend, "warm_up", None)  # unmetered: lazy start-up is not charged to the first cell
                warm_up() if warm_up is not None else backend.loglikelihood_rolling(["Warm-up."])
                meter = Meter(backend.info.device)
                model_info = {**asdict(backend.info), "meter": self._meter_info(meter)}
                self.invocation.record.setdefault("models", {})[unit.cells[0].model_slug] = model_info
                self.invocation.write()
            for cell in unit.cells:
                results.append(self._evaluate_cell(cell, backend, meter, finished[cell.key], pending[cell.key], model_info))
        except BudgetReached:
            for cell in unit.cells[len(results) :]:  # what was finished is summarised, as at the end of a run
                if finished[cell.key]:
                    self.store.write_summary(cell.key, cell_summary(cell, self.job, list(finished[cell.key].values()), model_info))
            raise
        finally:
            if meter is not None:
                meter.close()
            if backend is not None:
                self.spent_usd += float(getattr(backend, "spent_usd", 0.0))
                backend.close()
        return results

    def _meter_info(self, meter: Meter) -> dict[str, Any]:
        return {
            "energy_methods": meter.methods,
            "cpu": meter.cpu.model,
            "cpu_tdp_watts": meter.cpu.tdp_watts,
            "cpu_tdp_source": meter.cpu.source,
            "threads": meter.threads,
        }

    def _evaluate_cell(
        self,
        cell: Cell,
        backend: Backend | None,
        meter: Meter | None,
        finished: dict[str, dict[str, Any]],
        pending: list[Doc],
        model_info: dict[str, Any] | None,
    ) -> CellResult:
        started, computed = time.perf_counter(), 0
        self.events.cell_started(cell.label)
        if self.watch is not None:
            self.watch.cell(cell.label, cell.model.backend)
        if pending and backend is not None:
            config = self.job.config
            params = generation_params(cell.task, config.generation)
            for chunk in chunks(cell.docs, chunk_size(config, cell.model, backend.info.device, cell.task.task_kind)):
                todo = [doc for doc in chunk if doc.id not in finished]
                if not todo:
                    continue
                records = [{**record, "node": self.node} for record in evaluate_docs(cell.task, todo, backend, params, cell.reference, meter)]
                self.store.append_samples(cell.key, records)
                finished.update({record["doc_id"]: record for record in records})
                computed += len(records)
                self.events.samples_done(len(records))
                spent = self.spent_usd + float(getattr(backend, "spent_usd", 0.0))
                if config.max_usd is not None and spent >= config.max_usd:
                    raise BudgetReached(spent, config.max_usd)
        summary = cell_summary(cell, self.job, list(finished.values()), model_info)
        self.store.write_summary(cell.key, summary)
        result = CellResult(cell.key, cell.label, summary, computed, time.perf_counter() - started)
        self.events.cell_finished(result)
        return result


class Quiet:
    """Events nobody watches (a worker process without the driver's display)."""

    def loading(self, title: str) -> None:
        pass

    def cell_started(self, label: str) -> None:
        pass

    def samples_done(self, count: int) -> None:
        pass

    def cell_finished(self, result: CellResult) -> None:
        pass

    def note(self, text: str) -> None:
        pass


def evaluate_elsewhere(unit: WorkUnit, job: RunJob, role: str, events: Events | None = None, node: str | None = None) -> list[CellResult]:
    """Evaluate a unit in a process other than the driver's (an executor's worker), under that
    process's own invocation record (``role``: what kind of worker; ``node``: its machine's name in
    the cluster, default the host name) and crash watcher; its record keeps the cost settings its machine is priced with."""
    node = node or socket.gethostname()
    invocation = Invocation(
        job.run_dir,
        {
            "role": role,
            "node": node,
            "started_at": now(),
            "command": " ".join(sys.argv),
            "versions": package_versions(),
            "hardware": hardware(),
            "cost": job.cost.for_node(node).record(),
        },
    )
    with recorded(invocation) as watch:
        return Worker(job, invocation, events or Quiet(), watch, node=node).evaluate(unit)


def closing_status(error: BaseException | None) -> str:
    """The status an invocation record ends with, from how its work ended."""
    if error is None:
        return "finished"
    if isinstance(error, BudgetReached):
        return f"budget reached: spent ${error.spent:.4f} of max_usd ${error.limit:g}"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if is_no_space(error):
        return "failed: no space left on the disk"
    return f"failed: {str(error).splitlines()[0] if str(error) else type(error).__name__}"


@contextlib.contextmanager
def recorded(invocation: Invocation, watched: bool = True) -> Iterator[CrashWatch | None]:
    """Run a process's work under its invocation record (and a crash watcher): the record is
    written ``running`` and closed with how the work ended. Closing after a failure never fails
    again: on a full disk the old record's bytes are rewritten in place; if even that fails, the
    next run to take the folder marks the record killed."""
    invocation.write()
    watch = CrashWatch(invocation.path.parent.parent) if watched else None
    error: BaseException | None = None
    try:
        yield watch
    except BaseException as raised:
        error = raised
        raise
    finally:
        if watch is not None:
            watch.done()
        if error is None:
            invocation.close("finished", now())
        else:
            with contextlib.suppress(OSError):
                invocation.close(closing_status(error), now(), in_place_if_full=True)
