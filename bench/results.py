"""The results store: append-only, crash-safe sample files, per-cell summaries, a run manifest.

Layout::

    <output>/<run-id>/manifest.json                         the config and its hash, written once
    <output>/<run-id>/invocations/<pid>-<host>-<time>.json  one record per process that took part (host, hardware, status)
    <output>/<run-id>/<model>/<task>/<lang>/samples.jsonl   one line per finished sample
    <output>/<run-id>/<model>/<task>/<lang>/summary.json    scores with CIs, tokens, time

Each process writes only its own invocation record, so processes on several machines sharing a
run folder never overwrite each other; ``read_manifest`` shows the manifest with every record.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import UserError
from bench.kinds import KINDS, TaskKind
from bench.paths import is_safe_component
from bench.records import RESULTS_SCHEMA, Sample, Summary, check_schema

SAMPLES = "samples.jsonl"
SUMMARY = "summary.json"
MANIFEST = "manifest.json"
INVOCATIONS = "invocations"


@dataclass(frozen=True)
class CellKey:
    model: str  # folder-safe model slug
    task: str
    language: str

    def __post_init__(self) -> None:
        for part in (self.model, self.task, self.language):  # each becomes one folder inside the run folder, never a path
            if not is_safe_component(part):
                raise UserError(f"'{part}' cannot name a results folder (it must be one plain name, not a path)")

    def folder(self, run_dir: Path) -> Path:
        return run_dir / self.model / self.task / self.language


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def is_no_space(error: BaseException) -> bool:
    """Whether ``error`` says the disk (or the user's quota) is full."""
    return isinstance(error, OSError) and error.errno in NO_SPACE


class DamagedResults(UserError):
    """A results file that cannot be read as written; the message names the file (and line), and nothing is deleted."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view) :]


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, indent=2, default=str).encode("utf-8")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file, fsync it, then rename it over ``path``; on failure the temporary file is removed."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")  # unique per process
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, _json_bytes(data))
            os.fsync(fd)
        finally:
            os.close(fd)
        partial.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise


def _overwrite_in_place(path: Path, data: Any) -> None:
    """Rewrite an existing file's bytes where they are: when the disk is full there is no room for a temporary copy."""
    fd = os.open(path, os.O_WRONLY)
    try:
        payload = _json_bytes(data)
        _write_all(fd, payload)
        os.ftruncate(fd, len(payload))
        os.fsync(fd)
    finally:
        os.close(fd)


def _sample(line: bytes) -> dict[str, Any] | None:
    """The sample record on one line, or None when the line is not one."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) and "doc_id" in record else None


def _read_samples(path: Path, repair: bool) -> list[dict[str, Any]]:
    """Read a samples file.

    A last line without its newline is an append cut short by a crash: it is dropped, and cut off
    when ``repair``. Any other line that is not a sample is damage this code did not make: a
    DamagedResults names the file and line, and nothing is deleted.
    """
    if not path.is_file():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with a newline
    records, seen = [], set()
    for number, line in enumerate(lines, start=1):
        record = _sample(line)
        if record is None:
            raise DamagedResults(
                f"{path}: line {number} is not a sample record (damaged or edited); nothing was deleted: "
                "repair or remove that line (its sample is then computed again), and rerun"
            )
        if record["doc_id"] not in seen:  # a sample is never counted twice
            seen.add(record["doc_id"])
            records.append(record)
    if repair and torn:
        with path.open("r+b") as handle:
            handle.truncate(len(raw) - len(torn))
    return records


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        record = json.loads(path.read_bytes())
    except ValueError as error:
        raise DamagedResults(f"{path} is damaged ({str(error).splitlines()[0]})", path) from None
    if not isinstance(record, dict):
        raise DamagedResults(f"{path} is damaged (not {what})", path)
    check_schema(record, path)
    return record


def read_invocations(run_dir: Path) -> list[dict[str, Any]]:
    """Every process's invocation record in a run folder, oldest first."""
    folder = run_dir / INVOCATIONS
    records = [_read_json(path, "an invocation record") for path in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return sorted(records, key=lambda record: str(record.get("started_at", "")))


# What the newest invocation that recorded it says: the machine, versions and cost settings of the
# run as last extended (older folders kept these at the top of the manifest).
LATEST = ("versions", "git", "hardware", "cost")


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    """A run folder's manifest with every invocation record (``invocations``), each model's backend
    information (``models``) and the latest machine and cost settings; None when there is none yet;
    DamagedResults when a file is not what it should be any more."""
    path = run_dir / MANIFEST
    if not path.is_file():
        return None
    manifest = _read_json(path, "a manifest")
    if not isinstance(manifest.get("invocations", []), list):
        raise DamagedResults(f"{path} is damaged (not a manifest)", path)
    records = read_invocations(run_dir)
    manifest["invocations"] = [*manifest.get("invocations", []), *records]
    models = dict(manifest.get("models") or {})
    for record in records:
        models.update(record.get("models") or {})
        manifest.update({key: record[key] for key in LATEST if record.get(key) is not None})
    manifest["models"] = models
    return manifest


def _file_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:64] or "host"


_RECORDS_IN_THIS_PROCESS = itertools.count()


class Invocation:
    """A process's record of one piece of work in a run folder: written when it starts, rewritten by
    this process only. A process that evaluates several units in turn (a reused Ray worker) keeps one
    record per unit, told apart by a sequence number."""

    def __init__(self, run_dir: Path, record: dict[str, Any]) -> None:
        self.record = {"schema_version": RESULTS_SCHEMA, "host": socket.gethostname(), "pid": os.getpid(), "status": "running", **record}
        stamp = str(self.record.get("started_at", "")).replace(":", "").replace("-", "").replace("+", "")
        name = f"{self.record['pid']}-{_file_safe(str(self.record['host']))}-{_file_safe(stamp)}"
        sequence = next(_RECORDS_IN_THIS_PROCESS)
        self.path = run_dir / INVOCATIONS / (f"{name}-{sequence}.json" if sequence else f"{name}.json")

    def write(self, *, in_place_if_full: bool = False) -> None:
        """Write the record; ``in_place_if_full``: when the disk is full, rewrite the old file's bytes instead."""
        self.path.parent.mkdir(exist_ok=True)
        _write_record(self.path, self.record, in_place_if_full)

    def close(self, status: str, finished_at: str, *, in_place_if_full: bool = False) -> None:
        self.record.update(status=status, finished_at=finished_at)
        self.write(in_place_if_full=in_place_if_full)


def _write_record(path: Path, data: Any, in_place_if_full: bool) -> None:
    try:
        write_json_atomic(path, data)
    except OSError as error:
        if not (in_place_if_full and is_no_space(error) and path.is_file()):
            raise
        _overwrite_in_place(path, data)


def mark_stale_invocations(run_dir: Path, status: str, pid: int | None = None) -> None:
    """Mark invocation records still ``running`` (of one ``pid``, or all) with ``status``: their process is gone.

    Only the run lock's holder calls this for all of them (a process that holds no lock can be alive).
    """
    manifest_path = run_dir / MANIFEST
    folder = run_dir / INVOCATIONS
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        record = _read_json(path, "an invocation record")
        if record.get("status") == "running" and (pid is None or record.get("pid") == pid):
            write_json_atomic(path, {**record, "status": status})
    if manifest_path.is_file():  # records written inline by accessbench before schema 3
        manifest = _read_json(manifest_path, "a manifest")
        inline = [record for record in manifest.get("invocations", []) if isinstance(record, dict)]
        stale = [record for record in inline if record.get("status") == "running" and (pid is None or record.get("pid") == pid)]
        for record in stale:
            record["status"] = status
        if stale:
            write_json_atomic(manifest_path, manifest)


class RunStore:
    """One run's folder."""

    def __init__(self, run_dir: Path) -> None:
        if not is_safe_component(run_dir.name):
            raise UserError(f"'{run_dir.name}' cannot name a run folder (it must be one plain name, not a path)")
        self.run_dir = run_dir
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            probe = run_dir / f".write-test.{os.getpid()}"
            probe.write_text("ok", encoding="utf-8")
            probe.unlink()
        except OSError as error:
            raise UserError(f"cannot write results to {run_dir} ({error.strerror or error}); choose a writable folder with --output DIR") from None

    def finished_samples(self, cell: CellKey) -> list[dict[str, Any]]:
        """Samples already recorded for a cell (repairing a line torn by a crash)."""
        return _read_samples(cell.folder(self.run_dir) / SAMPLES, repair=True)

    def append_samples(self, cell: CellKey, records: Iterable[dict[str, Any]]) -> None:
        """Append finished samples and make sure they reach the disk before returning."""
        folder = cell.folder(self.run_dir)
        folder.mkdir(parents=True, exist_ok=True)
        payload = "".join(json.dumps(record, ensure_ascii=False, default=str) + "\n" for record in records).encode("utf-8")
        fd = os.open(folder / SAMPLES, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            start = os.fstat(fd).st_size
            try:
                _write_all(fd, payload)
                os.fsync(fd)
            except OSError:  # (disk full) take back what part of the chunk got written: only whole, synced chunks count
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)

    def summary(self, cell: CellKey) -> dict[str, Any] | None:
        path = cell.folder(self.run_dir) / SUMMARY
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def write_summary(self, cell: CellKey, summary: dict[str, Any]) -> None:
        write_json_atomic(cell.folder(self.run_dir) / SUMMARY, summary)

    def manifest(self) -> dict[str, Any] | None:
        return read_manifest(self.run_dir)

    def set_aside(self, path: Path) -> Path:
        """Rename a damaged file to ``<name>.damaged-<time>`` (kept for inspection) and return its new path."""
        aside = path.with_name(f"{path.name}.damaged-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}")
        path.replace(aside)
        return aside

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Write a new run's manifest (once: invocation records go to their own files)."""
        write_json_atomic(self.run_dir / MANIFEST, manifest)


def count_saved_samples(run_dir: Path) -> int:
    """Finished samples on disk in a run folder (a torn last line is not counted)."""
    return sum(len(_read_samples(key.folder(run_dir) / SAMPLES, repair=False)) for key in _cell_keys(run_dir, SAMPLES))


# ---------------------------------------------------------------- the read model
READ_ERRORS = (UserError, ValueError, KeyError, TypeError, AttributeError, OSError)  # what another version's (or damaged) files raise


def unreadable(error: Exception) -> str:
    """Why a results file written by another version (or damaged) could not be used, in a few words."""
    if isinstance(error, KeyError):
        return f"no field {error}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def run_folders(path: str | Path) -> list[Path]:
    """Run folders at or below ``path`` (a run folder, or a folder of runs)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"results folder {path} does not exist")
    if (path / MANIFEST).is_file():
        return [path]
    return sorted(manifest.parent for manifest in path.rglob(MANIFEST))


def _cell_keys(run_dir: Path, filename: str) -> list[CellKey]:
    """The cells of a run folder holding ``filename``, from the folder layout."""
    return [CellKey(file.parent.parent.parent.name, file.parent.parent.name, file.parent.name) for file in sorted(run_dir.glob(f"*/*/*/{filename}"))]


@dataclass
class StoredCell:
    """One (model, task, language) cell as stored: its summary and its samples."""

    key: CellKey  # key.model is the folder-safe slug: two runs of one model (say at two dtypes) stay apart
    run_dir: Path
    summary: dict[str, Any]
    samples: list[dict[str, Any]]

    @property
    def folder(self) -> Path:
        return self.key.folder(self.run_dir)

    @property
    def title(self) -> str:
        """The model's name as the run recorded it."""
        return str(self.summary.get("model_title") or self.summary["model"])

    @property
    def task(self) -> str:
        return str(self.summary["task"])

    @property
    def language(self) -> str:
        return str(self.summary["language"])

    @property
    def kind(self) -> TaskKind | None:
        """The task kind (None for a kind this version does not know)."""
        return KINDS.get(str(self.summary.get("task_kind", "")))

    @property
    def priced(self) -> bool:
        """Ran inference (a kind this version does not know counts as inference)."""
        return self.kind is None or self.kind.priced


@dataclass
class StoredRun:
    """One run folder: its manifest (with every invocation record) and its readable cells."""

    path: Path
    manifest: dict[str, Any]
    cells: list[StoredCell]
    skipped: list[str]  # one line per cell that could not be read, naming its folder and why


def read_cell(run_dir: Path, key: CellKey, with_samples: bool = True) -> StoredCell:
    """One cell; a ``READ_ERRORS`` error when its files are damaged or of a form this version cannot use."""
    path = key.folder(run_dir) / SUMMARY
    summary = Summary.read(json.loads(path.read_text(encoding="utf-8")), path)
    samples = [Sample.read(record) for record in _read_samples(key.folder(run_dir) / SAMPLES, repair=False)] if with_samples else []
    return StoredCell(key, run_dir, summary, samples)


def read_run(run_dir: Path, with_samples: bool = True) -> StoredRun:
    """A run folder's manifest and cells; a cell that cannot be read is left out with one line in ``skipped``."""
    manifest = read_manifest(run_dir) or {}
    cells, skipped = [], []
    for key in _cell_keys(run_dir, SUMMARY):
        try:
            cells.append(read_cell(run_dir, key, with_samples))
        except READ_ERRORS as error:
            skipped.append(f"{key.folder(run_dir)}: {unreadable(error)}; that cell is left out")
    return StoredRun(run_dir, manifest, cells, skipped)


def read_runs(path: str | Path, with_samples: bool = True) -> tuple[list[StoredRun], list[str]]:
    """Every run below ``path``, and one line per run or cell that could not be read (the rest are returned)."""
    runs, skipped = [], []
    for run_dir in run_folders(path):
        try:
            run = read_run(run_dir, with_samples)
        except READ_ERRORS as error:
            skipped.append(f"{run_dir}: {unreadable(error)}; that run is left out")
            continue
        runs.append(run)
        skipped.extend(run.skipped)
    return runs, skipped


# ---------------------------------------------------------------- loading into pandas
def load(path: str | Path) -> pd.DataFrame:
    """One row per sample of every run below ``path``; per-sample values become ``values.<name>`` columns."""
    rows = []
    for run_dir in run_folders(path):
        for key in _cell_keys(run_dir, SAMPLES):
            for record in _read_samples(key.folder(run_dir) / SAMPLES, repair=False):
                rows.append({"run_id": run_dir.name, "model": key.model, "task": key.task, "language": key.language, **record})
    return pd.json_normalize(rows, sep=".") if rows else pd.DataFrame(columns=["run_id", "model", "task", "language", "doc_id"])


def _flatten(prefix: str, block: dict[str, Any]) -> dict[str, Any]:
    """{'a': {'b': 1}} → {'prefix.a.b': 1}; a list of {'api': …, 'cost': …} becomes one column per api."""
    flat: dict[str, Any] = {}
    for key, value in block.items():
        name = f"{prefix}.{key}"
        if isinstance(value, dict):
            flat.update(_flatten(name, value))
        elif isinstance(value, list):
            flat.update({f"{name}.{item['api']}": item["cost"] for item in value if isinstance(item, dict) and "api" in item})
        else:
            flat[name] = value
    return flat


def load_summaries(path: str | Path) -> pd.DataFrame:
    """One row per (run, model, task, language) cell: each metric with its 95 % interval, tokens, time, and the
    cost block flattened into ``cost.*`` columns (e.g. ``cost.per_1m_input_tokens.total``, ``cost.energy.method``).
    ``model`` is the model's results folder (as in ``load``), ``model_ref`` the reference the config gave."""
    rows = []
    for run_dir in run_folders(path):
        for key in _cell_keys(run_dir, SUMMARY):
            summary = read_cell(run_dir, key, with_samples=False).summary
            row: dict[str, Any] = {key_: value for key_, value in summary.items() if not isinstance(value, dict)}
            row.update(run_id=run_dir.name, model=key.model, model_ref=summary.get("model"), task=key.task, language=key.language)
            for name, metric in summary.get("metrics", {}).items():
                row[name] = metric["value"]
                row[f"{name}_ci_low"] = metric["ci_low"]
                row[f"{name}_ci_high"] = metric["ci_high"]
            row["input_tokens"] = summary.get("tokens", {}).get("input")
            row["output_tokens"] = summary.get("tokens", {}).get("output")
            row.update(_flatten("cost", summary.get("cost") or {}))
            rows.append(row)
    return pd.DataFrame(rows)
