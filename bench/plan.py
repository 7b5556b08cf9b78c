"""Planning a run: every task, language, dataset, model and cost setting checked, and the cells
(model × task × language) listed, before any model is loaded."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bench.config import ModelConfig, RunConfig
from bench.cost.profiles import CostSettings, resolve_cost
from bench.data import DataMissing
from bench.errors import UserError, did_you_mean
from bench.models.base import Preflight
from bench.models.registry import preflight
from bench.results import CellKey
from bench.tasks import Doc, TaskSpec, get_task, load_docs, task_from_file


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

    @property
    def label(self) -> str:
        """'SmolLM2 · sib200 · hau_Latn', as progress lines and crash reports name the cell."""
        return f"{self.model_title} · {self.task.name} · {self.language}"


@dataclass
class Plan:
    cells: list[Cell]
    cost: CostSettings
    notes: list[str] = field(default_factory=list)
    preflights: dict[str, Preflight] = field(default_factory=dict)  # by model slug: what each model's check found


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
    models, slugs, preflights = [], set(), {}
    skips: dict[int, Mapping[str, str]] = {}
    for model in config.models:
        checked = preflight(model)  # reference, device and memory (or endpoint, key and model) are checked before any run starts
        source, skips[id(model)] = checked.source, checked.skips
        slug = source.slug
        while slug in slugs:
            slug += "+"
        slugs.add(slug)
        preflights[slug] = checked
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
    return Plan(cells, cost, notes, preflights)
