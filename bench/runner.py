"""Planning cells (model × task × language), running them with resume, writing the results store."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bench.config import ModelConfig, RunConfig
from bench.cost.meter import Meter
from bench.cost.pricing import api_price, cell_cost
from bench.cost.profiles import CostSettings, resolve_cost
from bench.crash_watch import CrashWatch
from bench.data import DataMissing
from bench.environment import git_commit, hardware, package_versions
from bench.errors import UserError
from bench.evaluation import evaluate_docs, generation_params, summarize
from bench.models.base import Backend, auto_batch_size
from bench.models.registry import load_backend, preflight, with_backend
from bench.results import CellKey, RunStore
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


def _languages_per_task(tasks: list[TaskSpec], requested: list[str], notes: list[str]) -> dict[str, list[str]]:
    """Each task's own codes for the requested languages; a language no task has is an error.

    Without requested languages (task files only), every language of each task; a task file whose
    rows name no language (``und``) runs whatever languages were requested.
    """
    codes: dict[str, list[str]] = {task.name: [] for task in tasks}
    for task in tasks:
        if not requested or task.languages == ["und"]:
            codes[task.name] = list(task.languages)
    for language in requested:
        found, first_error = False, None
        for task in (task for task in tasks if task.languages != ["und"]):
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
    codes = _languages_per_task(tasks, config.languages, notes)
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
                if task.kind == "tokenizer_stats" and task.reference_language:
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


def _chunk_size(config: RunConfig, model: ModelConfig, device: str, kind: str) -> int:
    """Items per checkpoint, from the config alone (never from a backend's out-of-memory back-off),
    so a resumed run chunks exactly as an uninterrupted one."""
    return auto_batch_size(config.batch_size_for(model), device) * (1 if kind == "generate" else 4)


def _chunks(docs: list[Doc], size: int) -> list[list[Doc]]:
    """Fixed chunks over the full, length-sorted doc list, so a resumed run batches exactly as before."""
    ordered = sorted(docs, key=lambda doc: (-len(doc.prompt or doc.text or ""), doc.id))
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def run(config: RunConfig, console: Console | None = None, backend_factory: BackendFactory = _load_backend) -> RunOutcome:
    """Run every unfinished cell of ``config``; finished samples are never recomputed."""
    console = console or Console(stderr=True)
    backend_notes: list[str] = []
    config = config.model_copy(update={"models": [with_backend(model, backend_notes) for model in config.models]})
    plan = make_plan(config)
    for note in [*backend_notes, *plan.notes]:
        console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    store = RunStore(config.output / config.run_id())
    manifest = store.manifest() or {
        "run_id": config.run_id(),
        "config": config.model_dump(mode="json"),
        "config_hash": config.fingerprint(),
        "seed": config.seed,
        "started_at": _now(),
        "invocations": [],
        "models": {},
    }
    manifest["cost"] = plan.cost.describe()
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
    store.write_manifest(manifest)
    watch = CrashWatch(store.run_dir)

    finished = {cell.key: {s["doc_id"]: s for s in store.finished_samples(cell.key)} for cell in plan.cells}
    pending = {cell.key: [doc for doc in cell.docs if doc.id not in finished[cell.key]] for cell in plan.cells}
    computed, spent_before = 0, 0.0
    try:
        with Progress(
            TextColumn("[bold]{task.description}"),
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
                        label = f"{cell.model_title} · {cell.task.name} · {cell.language}"
                        progress.update(bar, description=label)
                        watch.cell(label, model.backend)
                        if pending[cell.key] and backend is not None:
                            params = generation_params(cell.task, config.generation)
                            size = _chunk_size(config, model, backend.info.device, cell.task.kind)
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
                        store.write_summary(cell.key, _cell_summary(cell, plan, config, list(finished[cell.key].values()), info))
                except BudgetReached:
                    for cell in cells:  # what was finished is summarised, as at the end of a run
                        if finished[cell.key]:
                            info = manifest["models"].get(cell.model_slug)
                            store.write_summary(cell.key, _cell_summary(cell, plan, config, list(finished[cell.key].values()), info))
                    raise
                finally:
                    if meter is not None:
                        meter.close()
                    if backend is not None:
                        spent_before += float(getattr(backend, "spent_usd", 0.0))
                        backend.close()
            progress.update(bar, description="done")
    except BudgetReached as budget:
        watch.done()
        _close_invocation(store, manifest, invocation, f"budget reached: spent ${budget.spent:.4f} of max_usd ${budget.limit:g}")
        saved = sum(len(samples) for samples in finished.values())
        raise UserError(
            f"budget reached: this run spent ${budget.spent:.4f} of max_usd ${budget.limit:g}; {saved} samples are saved in {store.run_dir}; "
            "raise max_usd and rerun the same command to continue"
        ) from None
    except KeyboardInterrupt:
        watch.done()
        _close_invocation(store, manifest, invocation, "interrupted")
        raise RunInterrupted(store.run_dir, sum(len(samples) for samples in finished.values())) from None
    except BaseException as error:
        watch.done()
        _close_invocation(store, manifest, invocation, f"failed: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
        raise
    watch.done()
    _close_invocation(store, manifest, invocation, "finished")
    summaries = [summary for cell in plan.cells if (summary := store.summary(cell.key)) is not None]
    return RunOutcome(store.run_dir, summaries, computed)


def _close_invocation(store: RunStore, manifest: dict[str, Any], invocation: dict[str, Any], status: str) -> None:
    invocation["finished_at"] = _now()
    invocation["status"] = status
    manifest["finished_at"] = invocation["finished_at"]
    store.write_manifest(manifest)
