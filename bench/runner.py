"""Planning cells (model × task × language), running them with resume, writing the results store."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bench.config import ModelConfig, RunConfig
from bench.console import errors, labelled
from bench.cost.meter import Meter
from bench.cost.pricing import api_price, cell_cost
from bench.cost.profiles import CostSettings, resolve_cost
from bench.crash_watch import CrashWatch
from bench.data import DataMissing
from bench.environment import git_commit, hardware, package_versions
from bench.errors import UserError, did_you_mean
from bench.evaluation import evaluate_docs, generation_params, summarize
from bench.formatting import format_score
from bench.kinds import TaskKind
from bench.models.base import Backend, auto_batch_size
from bench.models.registry import load_backend, preflight, with_backend
from bench.results import RESULTS_SCHEMA, CellKey, DamagedResults, RunStore, count_saved_samples, is_no_space
from bench.run_lock import RunLock
from bench.tasks import Doc, TaskSpec, get_task, load_docs, task_from_file

BackendFactory = Callable[[ModelConfig, RunConfig], Backend]


@dataclass
class Cell:
    model: ModelConfig
    model_slug: str
    model_title: str
    task: TaskSpec
    language: str
    docs: list[Doc]
    reference: dict[str, Doc] | None = None

    @property
    def key(self) -> CellKey:
        return CellKey(self.model_slug, self.task.name, self.language)


@dataclass
class Plan:
    cells: list[Cell]
    cost: CostSettings
    notes: list[str] = field(default_factory=list)


@dataclass
class RunOutcome:
    run_dir: Any
    summaries: list[dict[str, Any]]
    computed_samples: int


class BudgetReached(Exception):
    """What paid APIs charged this invocation reached ``max_usd``."""

    def __init__(self, spent: float, limit: float) -> None:
        super().__init__(f"spent ${spent:.4f} of ${limit:g}")
        self.spent, self.limit = spent, limit


class RunInterrupted(Exception):
    """Ctrl-C during a run; finished samples are on disk."""

    def __init__(self, run_dir: Any, saved: int) -> None:
        super().__init__(f"interrupted: {saved} samples are saved in {run_dir}; rerun the same command to resume")
        self.run_dir = run_dir


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _languages_per_task(tasks: list[TaskSpec], config: RunConfig, notes: list[str]) -> dict[str, list[str]]:
    """Each task's own codes for the requested languages (narrowed by ``task_languages``); a language no task has is an error.

    Without requested languages (task files only), every language of each task; a task file whose
    rows name no language (``und``) runs whatever languages were requested.
    """
    requested = config.languages
    unknown = [name for name in config.task_languages if name not in {task.name for task in tasks}]
    if unknown:
        raise UserError(f"task_languages names '{unknown[0]}', which is not one of the run's tasks{did_you_mean(unknown[0], [task.name for task in tasks])}")
    codes: dict[str, list[str]] = {task.name: [] for task in tasks}
    for task in tasks:
        if not requested or task.languages == ["und"]:
            codes[task.name] = list(task.languages)
    for language in requested:
        found, first_error = False, None
        for task in (task for task in tasks if task.languages != ["und"] and language in config.languages_for(task.name)):
            try:
                code = task.language(language)
            except UserError as error:
                first_error = first_error or error
                notes.append(f"task {task.name} has no '{language}'; those cells are skipped")
                continue
            found = True
            if code not in codes[task.name]:
                codes[task.name].append(code)
        if not found and first_error is not None:
            raise first_error
    return codes


def make_plan(config: RunConfig) -> Plan:
    """Check every task, language, dataset, model and cost setting before anything is loaded, and list the cells.

    A cell whose data cannot be had right now is skipped with a note naming the command that
    fetches it, unless that leaves its task with no cell at all (then it is an error).
    """
    default_language = config.languages[0] if len(config.languages) == 1 else None
    tasks = [get_task(name) for name in config.tasks] + [task_from_file(path, default_language) for path in config.task_files]
    names = [task.name for task in tasks]
    for task in tasks:
        if names.count(task.name) > 1:
            raise UserError(f"two tasks are named '{task.name}'; give the task file another name (name: in a task YAML)")
    cost = resolve_cost(config.cost)
    notes: list[str] = []
    codes = _languages_per_task(tasks, config, notes)
    models, slugs = [], set()
    skips: dict[int, Mapping[str, str]] = {}
    for model in config.models:
        checked = preflight(model)  # reference, device and memory (or endpoint, key and model) are checked before any run starts
        source, skips[id(model)] = checked.source, checked.skips
        slug = source.slug
        while slug in slugs:
            slug += "+"
        slugs.add(slug)
        models.append((model, slug, source.title or model.ref))
    docs: dict[tuple[str, str], tuple[list[Doc], dict[str, Doc] | None]] = {}
    for task in tasks:
        missing: list[DataMissing] = []
        for code in codes[task.name]:
            try:
                cell_docs = load_docs(task, code, config.limit, data_dir=config.data_dir, fewshot=config.fewshot, seed=config.seed)
                reference = None
                if task.task_kind.needs_reference_language and task.reference_language:
                    reference = {doc.id: doc for doc in load_docs(task, task.reference_language, data_dir=config.data_dir)}
            except DataMissing as error:
                missing.append(error)
                continue
            docs[(task.name, code)] = (cell_docs, reference)
        if missing and len(missing) == len(codes[task.name]):
            raise missing[0]
        notes.extend(f"{error}; that cell is skipped" for error in missing)
    cells = []
    for model, slug, title in models:
        for task in tasks:
            if task.kind in skips[id(model)]:
                notes.append(f"{model.ref} cannot run {task.name}: {skips[id(model)][task.kind]}; those cells are skipped")
                continue
            for code in codes[task.name]:
                if (task.name, code) in docs:
                    cell_docs, reference = docs[(task.name, code)]
                    cells.append(Cell(model, slug, title, task, code, cell_docs, reference))
    return Plan(cells, cost, notes)


def _load_backend(model: ModelConfig, config: RunConfig) -> Backend:
    return load_backend(model, config.batch_size_for(model), config.seed)


def _cell_summary(cell: Cell, plan: Plan, config: RunConfig, samples: list[dict[str, Any]], model_info: dict[str, Any] | None) -> dict[str, Any]:
    ordered = sorted(samples, key=lambda sample: sample["doc_id"])
    return {
        "schema_version": RESULTS_SCHEMA,
        "run_id": config.run_id(),
        "config_hash": config.fingerprint(),
        "model": cell.model.ref,
        "model_title": cell.model_title,
        "model_info": model_info,
        "task": cell.task.name,
        "task_kind": cell.task.kind,
        "language": cell.language,
        **summarize(cell.task, ordered, config.seed),
        "cost": cell_cost(ordered, plan.cost, [cell.model_title, cell.model.ref], api_price(model_info)),
        "written_at": _now(),
    }


def _chunk_size(config: RunConfig, model: ModelConfig, device: str, kind: TaskKind) -> int:
    """Items per checkpoint, from the config alone (never from a backend's out-of-memory back-off),
    so a resumed run chunks exactly as an uninterrupted one; a generating kind's chunk is one batch."""
    return auto_batch_size(config.batch_size_for(model), device) * (1 if kind.generates else 4)


def finished_line(label: str, summary: dict[str, Any], seconds: float) -> str:
    """'SmolLM2 · sib200 · hau_Latn: acc 42% [30%–55%] (8 items, 12.3 s)' for logs that are not a terminal."""
    metric, score = next(iter((summary.get("metrics") or {}).items()), (None, None))
    shown = f"{metric} {format_score(metric, score)}" if metric and score else "no score"
    return f"finished {label}: {shown} ({summary.get('n_samples', 0)} items, {seconds:.1f} s)"


def _chunks(docs: list[Doc], size: int) -> list[list[Doc]]:
    """Fixed chunks over the full, length-sorted doc list, so a resumed run batches exactly as before."""
    ordered = sorted(docs, key=lambda doc: (-len(doc.prompt or doc.text or ""), doc.id))
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def run(config: RunConfig, console: Console | None = None, backend_factory: BackendFactory = _load_backend) -> RunOutcome:
    """Run every unfinished cell of ``config``; finished samples are never recomputed.

    The run folder is locked for the whole run: a second run of it stops with a UserError naming
    the process that holds it.
    """
    console = console or errors
    backend_notes: list[str] = []
    config = config.model_copy(update={"models": [with_backend(model, backend_notes) for model in config.models]})
    plan = make_plan(config)
    for note in [*backend_notes, *plan.notes]:
        console.print(labelled("note:", "yellow", note), highlight=False, soft_wrap=True)
    store = RunStore(config.output / config.run_id())
    with RunLock(store.run_dir):
        finished = {cell.key: {s["doc_id"]: s for s in store.finished_samples(cell.key)} for cell in plan.cells}  # damage stops the run here
        manifest = _take_over_manifest(store, config, console)
        return _run_cells(config, plan, store, manifest, finished, console, backend_factory)


def _take_over_manifest(store: RunStore, config: RunConfig, console: Console) -> dict[str, Any]:
    """The run folder's manifest, now that this process owns the folder.

    An invocation still marked running cannot be (the lock is ours): it was killed. A damaged
    manifest is set aside with a note and a new one started; the samples do not depend on it.
    """
    try:
        manifest = store.manifest()
    except DamagedResults as error:
        aside = store.set_manifest_aside()
        console.print(labelled("note:", "yellow", f"{error}; kept as {aside.name} and a new manifest started (the samples are intact)"), soft_wrap=True)
        manifest = None
    if manifest is None:
        return {
            "schema_version": RESULTS_SCHEMA,
            "run_id": config.run_id(),
            "config": config.model_dump(mode="json"),
            "config_hash": config.fingerprint(),
            "seed": config.seed,
            "started_at": _now(),
            "invocations": [],
            "models": {},
        }
    manifest["schema_version"] = RESULTS_SCHEMA  # this version writes the folder from now on
    for invocation in manifest.setdefault("invocations", []):
        if isinstance(invocation, dict) and invocation.get("status") == "running":
            invocation["status"] = "killed"
    manifest.setdefault("models", {})
    return manifest


def _run_cells(
    config: RunConfig,
    plan: Plan,
    store: RunStore,
    manifest: dict[str, Any],
    finished: dict[CellKey, dict[str, dict[str, Any]]],
    console: Console,
    backend_factory: BackendFactory,
) -> RunOutcome:
    """Record this invocation, evaluate what is pending, and close the invocation however the run ends."""
    pending = {cell.key: [doc for doc in cell.docs if doc.id not in finished[cell.key]] for cell in plan.cells}
    manifest["cost"] = plan.cost.record()
    invocation = {
        "started_at": _now(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "command": " ".join(sys.argv),
        "versions": package_versions(),
        "git": git_commit(),
        "hardware": hardware(),
        "status": "running",
    }
    manifest.update({"versions": invocation["versions"], "git": invocation["git"], "hardware": invocation["hardware"]})
    manifest["invocations"].append(invocation)
    computed = 0
    try:
        store.write_manifest(manifest)
        watch = CrashWatch(store.run_dir)
        try:
            computed = _evaluate(config, plan, store, manifest, finished, pending, watch, console, backend_factory)
        finally:
            watch.done()
        _close_invocation(store, manifest, invocation, "finished")
    except BudgetReached as budget:
        _close_quietly(store, manifest, invocation, f"budget reached: spent ${budget.spent:.4f} of max_usd ${budget.limit:g}")
        saved = sum(len(samples) for samples in finished.values())
        raise UserError(
            f"budget reached: this run spent ${budget.spent:.4f} of max_usd ${budget.limit:g}; {saved} samples are saved in {store.run_dir}; "
            "raise max_usd and rerun the same command to continue"
        ) from None
    except KeyboardInterrupt:
        _close_quietly(store, manifest, invocation, "interrupted")
        raise RunInterrupted(store.run_dir, sum(len(samples) for samples in finished.values())) from None
    except BaseException as error:
        if is_no_space(error):
            _close_quietly(store, manifest, invocation, "failed: no space left on the disk")
            where = getattr(error, "filename", None) or store.run_dir
            saved = count_saved_samples(store.run_dir)
            raise UserError(
                f"no space left on {where}; {saved} samples are saved in {store.run_dir}; free space and rerun the same command to resume"
            ) from None
        _close_quietly(store, manifest, invocation, f"failed: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
        raise
    summaries = [summary for cell in plan.cells if (summary := store.summary(cell.key)) is not None]
    return RunOutcome(store.run_dir, summaries, computed)


def _evaluate(
    config: RunConfig,
    plan: Plan,
    store: RunStore,
    manifest: dict[str, Any],
    finished: dict[CellKey, dict[str, dict[str, Any]]],
    pending: dict[CellKey, list[Doc]],
    watch: CrashWatch,
    console: Console,
    backend_factory: BackendFactory,
) -> int:
    """Evaluate every pending doc, model by model, appending samples and rewriting summaries; return the samples computed.

    Stops with BudgetReached once paid APIs charged this invocation ``max_usd``.
    """
    computed, spent_before = 0, 0.0
    with Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        bar = progress.add_task("planning", total=sum(len(docs) for docs in pending.values()))
        for model in config.models:
            cells = [cell for cell in plan.cells if cell.model is model]  # summaries are always rewritten: cost settings may have changed
            backend, meter = None, None
            if any(pending[cell.key] for cell in cells):
                progress.update(bar, description=f"loading {cells[0].model_title} (a GGUF is converted once, then cached)")
                backend = backend_factory(model, config)
                warm_up = getattr(backend, "warm_up", None)  # unmetered: lazy start-up is not charged to the first cell
                warm_up() if warm_up is not None else backend.loglikelihood_rolling(["Warm-up."])
                meter = Meter(backend.info.device)
                meter_info = {
                    "energy_methods": meter.methods,
                    "cpu": meter.cpu.model,
                    "cpu_tdp_watts": meter.cpu.tdp_watts,
                    "cpu_tdp_source": meter.cpu.source,
                    "threads": meter.threads,
                }
                manifest["models"][cells[0].model_slug] = {**asdict(backend.info), "meter": meter_info}
                store.write_manifest(manifest)
            try:
                for cell in cells:
                    cell_started = time.perf_counter()
                    label = f"{cell.model_title} · {cell.task.name} · {cell.language}"
                    progress.update(bar, description=label)
                    watch.cell(label, model.backend)
                    if pending[cell.key] and backend is not None:
                        params = generation_params(cell.task, config.generation)
                        size = _chunk_size(config, model, backend.info.device, cell.task.task_kind)
                        for chunk in _chunks(cell.docs, size):
                            todo_docs = [doc for doc in chunk if doc.id not in finished[cell.key]]
                            if not todo_docs:
                                continue
                            records = evaluate_docs(cell.task, todo_docs, backend, params, cell.reference, meter)
                            store.append_samples(cell.key, records)
                            finished[cell.key].update({record["doc_id"]: record for record in records})
                            computed += len(records)
                            progress.advance(bar, len(records))
                            spent = spent_before + float(getattr(backend, "spent_usd", 0.0))
                            if config.max_usd is not None and spent >= config.max_usd:
                                raise BudgetReached(spent, config.max_usd)
                    info = manifest["models"].get(cell.model_slug)
                    cell_summary = _cell_summary(cell, plan, config, list(finished[cell.key].values()), info)
                    store.write_summary(cell.key, cell_summary)
                    if not console.is_terminal:  # CI logs, `| tee`: a line per finished cell instead of a silent bar
                        console.print(finished_line(label, cell_summary, time.perf_counter() - cell_started), highlight=False, soft_wrap=True)
            except BudgetReached:
                for cell in cells:  # what was finished is summarised, as at the end of a run
                    if finished[cell.key]:
                        store.write_summary(
                            cell.key, _cell_summary(cell, plan, config, list(finished[cell.key].values()), manifest["models"].get(cell.model_slug))
                        )
                raise
            finally:
                if meter is not None:
                    meter.close()
                if backend is not None:
                    spent_before += float(getattr(backend, "spent_usd", 0.0))  # what paid APIs charged this invocation
                    backend.close()
        progress.update(bar, description="done")
    return computed


def _close_invocation(store: RunStore, manifest: dict[str, Any], invocation: dict[str, Any], status: str, *, in_place_if_full: bool = False) -> None:
    invocation["finished_at"] = _now()
    invocation["status"] = status
    manifest["finished_at"] = invocation["finished_at"]
    store.write_manifest(manifest, in_place_if_full=in_place_if_full)


def _close_quietly(store: RunStore, manifest: dict[str, Any], invocation: dict[str, Any], status: str) -> None:
    """Close the invocation after a failure without failing again: on a full disk the old manifest's bytes are
    rewritten in place; if even that fails, the next run to take the folder marks the invocation killed."""
    with contextlib.suppress(OSError):
        _close_invocation(store, manifest, invocation, status, in_place_if_full=True)
