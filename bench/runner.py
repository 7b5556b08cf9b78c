"""Running a config: plan → take the run folder → an executor evaluates the units → summaries.

Finished samples are never recomputed: whoever evaluates a unit reads what is pending from the
results store. The run folder is locked for the whole run, its manifest (the config and its
hash) is written once, and this process keeps its own invocation record.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bench.config import RunConfig
from bench.console import errors, labelled
from bench.environment import git_commit, hardware, package_versions
from bench.errors import UserError
from bench.executors import get_executor
from bench.executors.base import Executor
from bench.formatting import format_score
from bench.models.registry import with_backend
from bench.plan import Plan, make_plan
from bench.records import RESULTS_SCHEMA
from bench.results import DamagedResults, Invocation, RunStore, count_saved_samples, is_no_space, mark_stale_invocations, read_manifest
from bench.run_lock import RunLock
from bench.worker import BackendFactory, BudgetReached, CellResult, RunJob, Worker, WorkUnit, load_for_run, now, recorded


@dataclass
class RunOutcome:
    run_dir: Path
    summaries: list[dict[str, Any]]
    computed_samples: int


class RunInterrupted(Exception):
    """Ctrl-C during a run; finished samples are on disk."""

    def __init__(self, run_dir: Path, saved: int) -> None:
        super().__init__(f"interrupted: {saved} samples are saved in {run_dir}; rerun the same command to resume")
        self.run_dir = run_dir


def finished_line(label: str, summary: dict[str, Any], seconds: float) -> str:
    """'SmolLM2 · sib200 · hau_Latn: acc 42% [30%–55%] (8 items, 12.3 s)' for logs that are not a terminal."""
    metric, score = next(iter((summary.get("metrics") or {}).items()), (None, None))
    shown = f"{metric} {format_score(metric, score)}" if metric and score else "no score"
    return f"finished {label}: {shown} ({summary.get('n_samples', 0)} items, {seconds:.1f} s)"


class ProgressEvents:
    """The driver's display of what units report: a progress bar, and a line per finished cell when not a terminal."""

    def __init__(self, progress: Progress, total: int, console: Console) -> None:
        self.progress, self.console = progress, console
        self.bar = progress.add_task("planning", total=total)

    def loading(self, title: str) -> None:
        self.progress.update(self.bar, description=f"loading {title} (a GGUF is converted once, then cached)")

    def cell_started(self, label: str) -> None:
        self.progress.update(self.bar, description=label)

    def samples_done(self, count: int) -> None:
        self.progress.advance(self.bar, count)

    def cell_finished(self, result: CellResult) -> None:
        if not self.console.is_terminal:  # CI logs, `| tee`: a line per finished cell instead of a silent bar
            self.console.print(finished_line(result.label, result.summary, result.seconds), highlight=False, soft_wrap=True)

    def note(self, text: str) -> None:
        self.console.print(labelled("note:", "yellow", text), highlight=False, soft_wrap=True)


def run(config: RunConfig, console: Console | None = None, backend_factory: BackendFactory = load_for_run, executor: Executor | None = None) -> RunOutcome:
    """Run every unfinished cell of ``config`` with ``executor`` (default: inline); finished samples are never recomputed.

    A second run of the same folder stops with a UserError naming the process that holds it.
    """
    console = console or errors
    backend_notes: list[str] = []
    config = config.model_copy(update={"models": [with_backend(model, backend_notes) for model in config.models]})
    chosen = executor or get_executor("inline")
    plan = make_plan(config)
    for note in [*backend_notes, *plan.notes]:
        console.print(labelled("note:", "yellow", note), highlight=False, soft_wrap=True)
    fingerprint = config.fingerprint()  # once per run: task files' contents are hashed
    run_id = config.run_id(fingerprint)
    store = RunStore(config.output / run_id)
    job = RunJob(config, run_id, fingerprint, plan.cost, store.run_dir, backend_factory)
    with RunLock(store.run_dir):
        pending = sum(len(cell.docs) - len(store.finished_samples(cell.key)) for cell in plan.cells)  # damage stops the run here
        versions = package_versions()
        manifest = _take_over(store, job, versions, console)
        units = _units(plan, manifest)
        invocation = Invocation(
            store.run_dir,
            {
                "role": chosen.name,
                "started_at": now(),
                "command": " ".join(sys.argv),
                "versions": versions,
                "git": git_commit(),
                "hardware": hardware(),
                "cost": plan.cost.for_node(socket.gethostname()).record(),
            },
        )
        results = _execute(chosen, units, job, invocation, store, console, pending)
    by_key = {result.key: result.summary for result in results}
    summaries = [summary for cell in plan.cells if (summary := by_key.get(cell.key) or store.summary(cell.key)) is not None]
    return RunOutcome(store.run_dir, summaries, sum(result.computed for result in results))


def _units(plan: Plan, manifest: dict[str, Any]) -> list[WorkUnit]:
    """One unit per model, with the backend information an earlier invocation recorded for it."""
    units: dict[str, WorkUnit] = {}
    for cell in plan.cells:
        unit = units.setdefault(cell.model_slug, WorkUnit(cell.model, [], manifest["models"].get(cell.model_slug), plan.preflights.get(cell.model_slug)))
        unit.cells.append(cell)
    return list(units.values())


def _take_over(store: RunStore, job: RunJob, versions: dict[str, str | None], console: Console) -> dict[str, Any]:
    """The run folder's manifest (written now if the run is new), now that this process owns the folder.

    An invocation still marked running cannot be (the lock is ours): it was killed. A damaged
    manifest or invocation record is set aside with a note; the samples do not depend on them.
    """
    while True:
        try:
            mark_stale_invocations(store.run_dir, "killed")
            manifest = read_manifest(store.run_dir)
            break
        except DamagedResults as error:
            if error.path is None:
                raise
            aside = store.set_aside(error.path)
            console.print(labelled("note:", "yellow", f"{error}; kept as {aside.name} (the samples are intact)"), soft_wrap=True)
    if manifest is None:
        store.write_manifest(
            {
                "schema_version": RESULTS_SCHEMA,
                "run_id": job.run_id,
                "config": job.config.model_dump(mode="json"),
                "config_hash": job.config_hash,
                "seed": job.config.seed,
                "started_at": now(),
                "versions": versions,  # who wrote the folder (an older reader's refusal names it)
            }
        )
        manifest = read_manifest(store.run_dir) or {}
    return manifest


def _execute(
    executor: Executor, units: list[WorkUnit], job: RunJob, invocation: Invocation, store: RunStore, console: Console, pending: int
) -> list[CellResult]:
    """Hand the units to the executor under this process's invocation record; turn how it ends into what the user reads."""
    try:
        with (
            Progress(
                TextColumn("{task.description}", style="bold", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            ) as progress,
            recorded(invocation) as watch,
        ):
            events = ProgressEvents(progress, pending, console)
            results: list[CellResult] = executor.run(units, job, Worker(job, invocation, events, watch))
            progress.update(events.bar, description="done")
            return results
    except BudgetReached as budget:
        raise UserError(
            f"budget reached: this run spent ${budget.spent:.4f} of max_usd ${budget.limit:g}; {count_saved_samples(store.run_dir)} samples are saved in "
            f"{store.run_dir}; raise max_usd and rerun the same command to continue"
        ) from None
    except KeyboardInterrupt:
        raise RunInterrupted(store.run_dir, count_saved_samples(store.run_dir)) from None
    except OSError as error:
        if not is_no_space(error):
            raise
        where = error.filename or store.run_dir
        raise UserError(
            f"no space left on {where}; {count_saved_samples(store.run_dir)} samples are saved in {store.run_dir}; free space and rerun the same command to resume"
        ) from None
