"""The results store: append-only, crash-safe sample files, per-cell summaries, a run manifest.

Layout::

    <output>/<run-id>/manifest.json
    <output>/<run-id>/<model>/<task>/<lang>/samples.jsonl   one line per finished sample
    <output>/<run-id>/<model>/<task>/<lang>/summary.json    scores with CIs, tokens, time
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import UserError

SAMPLES = "samples.jsonl"
SUMMARY = "summary.json"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class CellKey:
    model: str  # folder-safe model slug
    task: str
    language: str

    def folder(self, run_dir: Path) -> Path:
        return run_dir / self.model / self.task / self.language


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file, fsync it, then rename it over ``path``."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")  # unique per process
    with partial.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, ensure_ascii=False, indent=2, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(path)


def _read_samples(path: Path, repair: bool) -> list[dict[str, Any]]:
    """Read a samples file; a line torn by a crash (always the last) is dropped, and cut off when ``repair``."""
    if not path.is_file():
        return []
    raw = path.read_bytes()
    records, seen, good_end, offset = [], set(), 0, 0
    for line in raw.splitlines(keepends=True):
        offset += len(line)
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            break
        if not line.endswith(b"\n"):
            break
        good_end = offset
        if record["doc_id"] not in seen:  # a sample is never counted twice
            seen.add(record["doc_id"])
            records.append(record)
    if repair and good_end < len(raw):
        with path.open("r+b") as handle:
            handle.truncate(good_end)
    return records


class RunStore:
    """One run's folder."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            probe = run_dir / ".write-test"
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
        payload = "".join(json.dumps(record, ensure_ascii=False, default=str) + "\n" for record in records)
        with (folder / SAMPLES).open("a", encoding="utf-8") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())

    def summary(self, cell: CellKey) -> dict[str, Any] | None:
        path = cell.folder(self.run_dir) / SUMMARY
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def write_summary(self, cell: CellKey, summary: dict[str, Any]) -> None:
        write_json_atomic(cell.folder(self.run_dir) / SUMMARY, summary)

    def manifest(self) -> dict[str, Any] | None:
        path = self.run_dir / MANIFEST
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def manifest_or_none(self) -> dict[str, Any] | None:
        """The manifest, or None when it is missing or unreadable (its samples stay usable)."""
        try:
            return self.manifest()
        except (ValueError, OSError):
            return None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json_atomic(self.run_dir / MANIFEST, manifest)


def count_saved_samples(run_dir: Path) -> int:
    """Finished samples on disk in a run folder (a torn last line is not counted)."""
    return sum(len(_read_samples(file, repair=False)) for _, file in _cells(run_dir, SAMPLES))


# ---------------------------------------------------------------- loading into pandas
def _run_dirs(path: Path) -> Iterator[Path]:
    """Run folders at or below ``path`` (a run folder, or a folder of runs)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"results folder {path} does not exist")
    if (path / MANIFEST).is_file():
        yield path
        return
    yield from sorted(manifest.parent for manifest in path.rglob(MANIFEST))


def _cells(run_dir: Path, filename: str) -> Iterator[tuple[CellKey, Path]]:
    for file in sorted(run_dir.glob(f"*/*/*/{filename}")):
        language_dir = file.parent
        yield CellKey(language_dir.parent.parent.name, language_dir.parent.name, language_dir.name), file


def load(path: str | Path) -> pd.DataFrame:
    """One row per sample of every run below ``path``; per-sample values become ``values.<name>`` columns."""
    rows = []
    for run_dir in _run_dirs(Path(path)):
        for cell, file in _cells(run_dir, SAMPLES):
            for record in _read_samples(file, repair=False):
                rows.append({"run_id": run_dir.name, "model": cell.model, "task": cell.task, "language": cell.language, **record})
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
    cost block flattened into ``cost.*`` columns (e.g. ``cost.per_1m_input_tokens.total``, ``cost.energy.method``)."""
    rows = []
    for run_dir in _run_dirs(Path(path)):
        for cell, file in _cells(run_dir, SUMMARY):
            summary = json.loads(file.read_text(encoding="utf-8"))
            row: dict[str, Any] = {"run_id": run_dir.name, "model": cell.model, "task": cell.task, "language": cell.language}
            row.update({key: value for key, value in summary.items() if not isinstance(value, dict)})
            for name, metric in summary.get("metrics", {}).items():
                row[name] = metric["value"]
                row[f"{name}_ci_low"] = metric["ci_low"]
                row[f"{name}_ci_high"] = metric["ci_high"]
            row["input_tokens"] = summary.get("tokens", {}).get("input")
            row["output_tokens"] = summary.get("tokens", {}).get("output")
            row.update(_flatten("cost", summary.get("cost") or {}))
            rows.append(row)
    return pd.DataFrame(rows)
