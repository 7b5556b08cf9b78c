"""Task specs (YAML in tasks/), the registry of them, an organisation's own file as a task, and rows → docs.

A task file describes one family: shared fields at the top, and either a single task
(`name:` at the top) or several (`tasks:` — a list of entries that override the shared fields).
Templates are plain ``{field}`` placeholders (``{parallel[sentence]}`` and ``{answer_pivot[text][0]}``
reach inside a field); rows also offer ``{language_name}`` and, for multiple choice, ``{lettered_choices}``.
A row whose templates use a null field or an empty list, or whose generation reference is empty, is left out.
"""

from __future__ import annotations

import hashlib
import random
import re
import string
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bench.config import describe_validation_error
from bench.data import Row, SourceSpec, UserFile, load_rows, parse_list, read_user_rows
from bench.errors import UserError, did_you_mean, short_list
from bench.kinds import KINDS, TaskKind
from bench.languages import display_name, language_code, match_language
from bench.metrics import METRICS
from bench.paths import builtin_dir

LETTERS = string.ascii_uppercase


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskGeneration(_Strict):
    """Task-level generation settings; they override the run config's defaults."""

    max_new_tokens: int | None = Field(None, ge=1)
    stop: list[str] | None = None


class TaskSpec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    kind: str  # a name in bench.kinds.KINDS
    description: str
    source: SourceSpec
    languages: list[str] = Field(min_length=1)
    reference_language: str | None = Field(None, description="parallel language the premium is measured against")
    parallel_language: str | None = Field(None, description="rows are joined by id with this language's rows, as {parallel[field]}")
    id_field: str | None = Field("id", description="field with each row's id; null: the row number")
    prompt: str | None = None
    text: str | None = None
    target: str | None = None
    choices: list[str] | None = Field(None, description="multiple choice: the choices, as templates (fixed labels or {field}s)")
    choices_field: str | None = Field(None, description="multiple choice: a field holding the list of choices")
    gold: Literal["choice", "letter", "index", "position"] = Field("choice", description="how target names the right choice")
    prompt_lettered: str | None = Field(
        None,
        description="multiple choice answered with a letter (an endpoint without prompt log-probs); default: the prompt if it lists {lettered_choices}, else the prompt, the lettered choices and 'Answer:'",
    )
    fewshot: int = Field(0, ge=0, description="examples drawn (seeded) from source.fewshot_split; the run's fewshot overrides")
    generation: TaskGeneration = Field(default_factory=TaskGeneration)
    metrics: list[str] = Field(min_length=1)
    domain: str = Field(
        "general", pattern=r"^[a-z][a-z0-9_]*$", description="what the task's texts are about: general, health, agriculture, finance, education, …"
    )
    subgroups: dict[str, str] = Field(
        default_factory=dict, description="name → template of a row's group (e.g. specialty: '{specialty}'); scores are also reported per group"
    )
    choice_line: str = Field("{letter}. {choice}", description="how {lettered_choices} writes each choice ({letter}, {choice})")
    score_choices_as: Literal["text", "letter"] = Field("text", description="each choice is scored as its text, or as its letter when the prompt lists them")
    defective_items: Literal["error", "wrong"] = Field(
        "error", description="an item without usable choices or answer: an error, or kept and scored wrong (comparable with published scores)"
    )

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in KINDS:
            raise ValueError(f"unknown kind '{value}'{did_you_mean(value, KINDS)}; known: {', '.join(KINDS)}")
        return value

    @property
    def task_kind(self) -> TaskKind:
        return KINDS[self.kind]

    @model_validator(mode="after")
    def _consistent(self) -> TaskSpec:
        kind = self.task_kind
        missing = [name for name in kind.templates if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.kind} task needs {' and '.join(missing)}")
        if kind.has_choices and (self.choices is None) == (self.choices_field is None):
            raise ValueError("a multiple_choice task needs exactly one of choices (a list) or choices_field (a field holding the list)")
        for template in (self.prompt, self.text, self.target, *(self.choices or [])):
            if template is not None and any(name == "" for _, name, _, _ in string.Formatter().parse(template) if name is not None):
                raise ValueError(f"template {template!r} has an empty {{}}; write a literal brace as {{{{ or }}}}")
        for metric in self.metrics:
            if metric not in METRICS:
                raise ValueError(f"unknown metric '{metric}'{did_you_mean(metric, METRICS)}")
            if metric not in kind.metrics:
                raise ValueError(f"metric '{metric}' does not apply to {self.kind} tasks; use {', '.join(sorted(kind.metrics))}")
        if kind.needs_reference_language and self.reference_language not in (None, *self.languages):
            raise ValueError(f"reference_language '{self.reference_language}' is not among the task's languages")
        if self.fewshot and not kind.prompted:
            raise ValueError(f"few-shot examples do not apply to {self.kind} tasks")
        if self.fewshot and self.source.fewshot_split is None:
            raise ValueError("fewshot needs source.fewshot_split (examples never come from the test split)")
        return self

    def language(self, requested: str) -> str:
        """The task's own code for a requested language (ISO 639-3, FLORES code or English name)."""
        code = match_language(requested, self.languages, self.name)
        if code == self.parallel_language:
            raise UserError(f"task {self.name} translates from or into {code} itself; choose another language")
        return code

    def data_needs(self, language: str) -> list[tuple[str, str]]:
        """The (language, split) pairs a cell in ``language`` reads: test and few-shot splits, and the parallel language."""
        splits = [self.source.split] + ([self.source.fewshot_split] if self.source.fewshot_split else [])
        languages = [language] + [other for other in (self.parallel_language, self.reference_language) if other and other != language]
        return [(code, split) for code in languages for split in splits]


@dataclass(frozen=True)
class Doc:
    """One evaluation item, rendered from a dataset row."""

    id: str
    prompt: str | None = None
    text: str | None = None
    target: str | None = None
    choices: tuple[str, ...] = ()
    gold: int | None = None
    row: Row = field(default_factory=dict)
    groups: tuple[tuple[str, str], ...] = ()  # (subgroup name, this item's value)
    defect: str | None = None  # why a kept item cannot be answered (scored wrong)
    lettered_prompt: str | None = None  # multiple choice asked for a letter (scoring: generative)


class _Unusable(Exception):
    """A row that cannot become an item: a field its templates use is null or an empty list, or its reference is empty."""


def _base_name(placeholder: str) -> str:
    return re.split(r"[\[.]", placeholder, maxsplit=1)[0]


def render(template: str, row: Row, task: str) -> str:
    """Fill ``{field}`` placeholders from a row; a missing field is a one-line error."""
    fields = [_base_name(name) for _, name, _, _ in string.Formatter().parse(template) if name]
    missing = [name for name in fields if name not in row]
    if missing:
        raise UserError(f"task {task}: its template uses {{{missing[0]}}} but the data has only {', '.join(sorted(row))}")
    if any(row[name] is None for name in fields):
        raise _Unusable
    try:
        return template.format_map(row)
    except IndexError:
        raise _Unusable from None  # e.g. an empty list of answers
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise UserError(f"task {task}: template {template!r} cannot be filled from a row ({type(error).__name__}: {error}); check its field names") from None


def _choices(spec: TaskSpec, row: Row, doc_id: str) -> list[str]:
    if spec.choices is not None:
        return [render(choice, row, spec.name).strip() for choice in spec.choices]
    parsed = parse_list(row.get(spec.choices_field or ""))
    if parsed is None:
        raise UserError(
            f"task {spec.name}, item {doc_id}: field '{spec.choices_field}' is not a list of choices ({str(row.get(spec.choices_field or ''))[:60]!r})"
        )
    return parsed


def _gold(spec: TaskSpec, doc_id: str, target: str, choices: list[str]) -> int:
    """The index of the right choice, from the rendered target (a choice's text, a letter, a 0- or 1-based number)."""
    text, index = target.strip(), -1
    if spec.gold == "choice":
        lowered = [choice.lower() for choice in choices]
        index = choices.index(text) if text in choices else lowered.index(text.lower()) if text.lower() in lowered else -1
    elif spec.gold == "letter" and len(text) == 1:
        index = LETTERS.find(text.upper())
    elif spec.gold in ("index", "position") and text.lstrip("-").isdigit():
        index = int(text) - (spec.gold == "position")
    if not 0 <= index < len(choices):
        raise UserError(f"task {spec.name}, item {doc_id}: its answer '{target}' names none of its {len(choices)} choices (gold: {spec.gold})")
    return index


def _groups(spec: TaskSpec, context: Row) -> tuple[tuple[str, str], ...]:
    """This item's value of each subgroup whose template it can fill (an empty value: not grouped)."""
    groups = []
    for name, template in spec.subgroups.items():
        if any(_base_name(field) not in context for _, field, _, _ in string.Formatter().parse(template) if field):
            continue
        try:
            value = render(template, context, spec.name).strip()
        except _Unusable:
            continue
        if value:
            groups.append((name, value))
    return tuple(groups)


def _row_to_doc(spec: TaskSpec, row: Row, doc_id: str, language: str) -> Doc:
    context = {"language_name": display_name(language), **row}
    choices: list[str] = []
    defect = None
    if spec.task_kind.has_choices:
        try:
            choices = _choices(spec, context, doc_id)
        except UserError:
            if spec.defective_items == "error":
                raise
            defect = "no answer options"
        context["n_choices"] = len(choices)
        context["lettered_choices"] = "\n".join(spec.choice_line.format(letter=LETTERS[i], choice=choice) for i, choice in enumerate(choices))
    target = render(spec.target, context, spec.name) if spec.target else None
    if spec.task_kind.needs_target and not (target or "").strip():
        raise _Unusable
    gold = None
    if choices:
        try:
            gold = _gold(spec, doc_id, target or "", choices)
        except UserError:
            if spec.defective_items == "error":
                raise
            defect, choices = f"its answer '{target}' names none of its {len(choices)} choices", []
    scored = [LETTERS[i] for i in range(len(choices))] if spec.score_choices_as == "letter" else choices
    prompt = render(spec.prompt, context, spec.name) if spec.prompt else None
    return Doc(
        id=doc_id,
        prompt=prompt,
        lettered_prompt=_lettered_prompt(spec, context, prompt) if choices else None,
        text=render(spec.text, context, spec.name) if spec.text else None,
        target=scored[gold] if gold is not None else target,
        choices=tuple(scored),
        gold=gold,
        row=row,
        groups=_groups(spec, context),
        defect=defect,
    )


def _lettered_prompt(spec: TaskSpec, context: Row, prompt: str | None) -> str:
    """The question asked for a letter: the task's ``prompt_lettered``, the prompt when it lists the lettered choices, else both."""
    if spec.prompt_lettered:
        return render(spec.prompt_lettered, context, spec.name)
    if spec.prompt and "{lettered_choices}" in spec.prompt:
        return prompt or ""
    return f"{prompt}\n{context['lettered_choices']}\nAnswer with the letter of one choice.\nAnswer:"


def _row_id(spec: TaskSpec, row: Row, number: int, language: str) -> str:
    if spec.id_field is None:
        return str(number)
    if spec.id_field not in row:
        raise UserError(f"task {spec.name} ({language}): row {number} has no '{spec.id_field}' field")
    return str(row[spec.id_field])


def _docs(spec: TaskSpec, language: str, split: str, data_dir: Path | None) -> list[Doc]:
    rows = load_rows(spec.source, language, split, data_dir, spec.name)
    partners: dict[str, Row] = {}
    if spec.parallel_language:
        partner_rows = load_rows(spec.source, spec.parallel_language, split, data_dir, spec.name)
        partners = {_row_id(spec, row, number, spec.parallel_language): row for number, row in enumerate(partner_rows, start=1)}
    docs = []
    for number, row in enumerate(rows, start=1):
        doc_id = _row_id(spec, row, number, language)
        if spec.parallel_language:
            if doc_id not in partners:
                continue  # no parallel sentence to translate from or to
            row = {**row, "parallel": partners[doc_id]}
        try:
            docs.append(_row_to_doc(spec, row, doc_id, language))
        except _Unusable:
            continue  # e.g. an AfriQA question whose gold passage is missing
    return docs


def _with_examples(spec: TaskSpec, doc: Doc, pool: list[Doc], k: int, seed: int, language: str) -> Doc:
    """Prefix k solved examples, drawn with a seed per doc so a resumed run sees the same prompt."""
    shots = random.Random(f"{seed}:{spec.name}:{language}:{doc.id}").sample(pool, min(k, len(pool)))
    prefix = "".join(f"{shot.prompt} {shot.target}\n\n" for shot in shots)
    lettered = None
    if doc.lettered_prompt is not None:
        lettered = "".join(f"{shot.lettered_prompt} {LETTERS[shot.gold or 0]}\n\n" for shot in shots) + doc.lettered_prompt
    return replace(doc, prompt=prefix + (doc.prompt or ""), lettered_prompt=lettered)


def load_docs(
    spec: TaskSpec, language: str, limit: int | None = None, *, data_dir: Path | None = None, fewshot: int | None = None, seed: int = 1234
) -> list[Doc]:
    """The task's docs in ``language`` (its own code), a seeded sample of ``limit`` of them, with k-shot prompts.

    ``fewshot`` (the run's setting) overrides the task's own k; examples come only from the few-shot split.
    """
    docs = sample_docs(_docs(spec, language, spec.source.split, data_dir), limit, seed)
    k = spec.fewshot if fewshot is None else fewshot
    if not k or not spec.task_kind.prompted:
        return docs
    if spec.source.fewshot_split is None:
        raise UserError(f"task {spec.name} has no few-shot split (examples never come from its test data); run it with fewshot: 0")
    pool = [doc for doc in _docs(spec, language, spec.source.fewshot_split, data_dir) if doc.defect is None]
    if not pool:
        raise UserError(f"task {spec.name} ({language}): its few-shot split '{spec.source.fewshot_split}' is empty; run it with fewshot: 0")
    return [_with_examples(spec, doc, pool, k, seed, language) for doc in docs]


def sample_docs(docs: list[Doc], limit: int | None, seed: int) -> list[Doc]:
    """``limit`` docs chosen by a seeded hash of their ids, kept in data order.

    Many files are sorted by label, so the first N rows would be one class; hashing ids (not
    positions) picks the same items in every language of a parallel dataset.
    """
    if not limit or limit >= len(docs):
        return docs
    chosen = set(sorted((doc.id for doc in docs), key=lambda doc_id: hashlib.sha256(f"{seed}:{doc_id}".encode()).digest())[:limit])
    return [doc for doc in docs if doc.id in chosen]


# ---------------------------------------------------------------- an organisation's own file
class TaskFileSpec(_Strict):
    """The short YAML that turns a CSV/JSONL into a task: the file and, where they differ, its column names."""

    file: Path
    name: str | None = Field(None, pattern=r"^[a-z0-9_]+$")
    description: str | None = None
    prompt: str = "prompt"
    reference: str = "reference"
    choices: str = "choices"
    id: str = "id"
    language_column: str = "language"
    language: str | None = Field(None, description="language of every row that does not name one")
    max_new_tokens: int = Field(128, ge=1)
    domain: str = Field("general", pattern=r"^[a-z][a-z0-9_]*$", description="what the messages are about: health, agriculture, finance, …")


def _read_pointer(path: Path) -> TaskFileSpec:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise UserError(f"task file {path} cannot be read as YAML ({str(error).splitlines()[0]}); fix it") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a task YAML is a mapping such as `file: messages.csv`")
    try:
        pointer = TaskFileSpec.model_validate(data)
    except ValidationError as error:
        raise UserError(describe_validation_error(error, str(path), TaskFileSpec).replace("\n", "; ")) from None
    return pointer.model_copy(update={"file": pointer.file if pointer.file.is_absolute() else path.parent / pointer.file})


def task_from_file(path: Path, default_language: str | None = None) -> TaskSpec:
    """A task from an organisation's CSV/JSONL (or a YAML naming one): generation, or multiple choice with a choices column.

    Rows without a language take the YAML's ``language``, else ``default_language`` (a single --lang), else ``und``.
    """
    path = Path(path)
    pointer = _read_pointer(path) if path.suffix.lower() in (".yaml", ".yml") else TaskFileSpec(file=path)
    language = pointer.language or default_language or "und"
    if language != "und":
        try:
            language = language_code(language)
        except (LookupError, ValueError):
            raise UserError(f"{path}: '{language}' is not a language code; use hau, hau_Latn or Hausa") from None
    user = UserFile(
        path=pointer.file,
        prompt=pointer.prompt,
        reference=pointer.reference,
        choices=pointer.choices,
        id=pointer.id,
        language=pointer.language_column,
        default_language=language,
    )
    rows = read_user_rows(user)
    multiple_choice = "choices" in rows[0]
    name = pointer.name or re.sub(r"[^a-z0-9_]+", "_", pointer.file.stem.lower()).strip("_") or "my_task"
    return TaskSpec(
        name=name,
        kind="multiple_choice" if multiple_choice else "generate",
        description=pointer.description or f"your file {pointer.file.name}",
        source=SourceSpec(file=user),
        languages=sorted({row["language"] for row in rows}),
        prompt="{prompt}",
        target="{reference}",
        choices_field="choices" if multiple_choice else None,
        generation=TaskGeneration(max_new_tokens=pointer.max_new_tokens),
        metrics=["acc", "acc_norm_bytes"] if multiple_choice else ["chrf_pp", "exact_match"],
        domain=pointer.domain,
    )


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
