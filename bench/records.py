"""The typed records a run folder holds: one sample (a line of ``samples.jsonl``) and one cell's
summary (``summary.json``), with the results schema version.

The worker checks each summary against ``Summary`` before writing it, and the read model
(``bench.results``) checks what it reads, so a file written by another version either reads or
is refused in one line that names it, the version that wrote it and what to do. Fields a later
version adds are kept (``extra="allow"``); a field this version needs and cannot find is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench.errors import UserError

# The layout and fields of manifest.json, invocation records, summary.json and samples.jsonl. Raise
# it when a change would mislead an older reader; a reader accepts this version and every older one.
RESULTS_SCHEMA = 3  # 1: before the field existed (the same fields); 2: schema_version recorded; 3: invocations/ records


class NewerResults(UserError):
    """A run folder written by a newer accessbench, whose files this version may misread."""


def check_schema(record: dict[str, Any], where: Path) -> None:
    """Refuse, in one line saying what to do, a record of a newer results schema."""
    version = record.get("schema_version", 1)
    if isinstance(version, int) and version <= RESULTS_SCHEMA:
        return
    writer = record.get("written_by") or (record.get("versions") or {}).get("accessbench", "a newer version")
    raise NewerResults(
        f"{where} was written by accessbench {writer} (results schema {version}); this accessbench reads schema {RESULTS_SCHEMA} "
        "and older: upgrade accessbench to read it, or run into another --output folder"
    )


class Record(BaseModel):
    model_config = ConfigDict(extra="allow")

    @classmethod
    def checked(cls, data: Any) -> dict[str, Any]:
        """``data`` itself once it has every field this version needs, of the right type; else a ValueError naming the first bad field."""
        try:
            cls.model_validate(data)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the record"
            raise ValueError(f"{cls.__name__.lower()} field {where}: {first['msg'].lower()}") from None
        result: dict[str, Any] = data
        return result


class Sample(Record):
    """One finished item."""

    doc_id: str
    input: str | None = None  # the prompt or text as the model saw it
    target: Any = None
    output: str | None = None  # what the model generated (None for scoring kinds)
    values: dict[str, Any]  # per-sample metric values (acc, neg_log2_prob, chrF statistics, tokens, …)
    input_tokens: int
    output_tokens: int
    seconds: float = 0.0
    meter: dict[str, Any] | None = None  # its share of the metered prefill/decode time, CPU time, energy and peak memory
    scoring: str | None = None  # multiple choice: loglikelihood | generative
    choices: list[str] | None = None
    groups: dict[str, Any] | None = None  # subgroup values (specialty, country, …)

    @classmethod
    def read(cls, data: Any) -> dict[str, Any]:
        return cls.checked(data)


class Score(Record):
    """A metric's value with its 95 % interval."""

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None


class Summary(Record):
    """One cell's scores, tokens, time and cost."""

    schema_version: int = 1
    written_by: str | None = None  # the accessbench version
    run_id: str | None = None
    config_hash: str | None = None
    model: str
    model_title: str | None = None
    model_info: dict[str, Any] | None = None  # the backend's own account of the model (parameters, dtype, device, …)
    task: str
    task_kind: str | None = None
    language: str
    domain: str | None = None
    n_samples: int
    scoring: str | None = None
    metrics: dict[str, Score]
    tokens: dict[str, int] = Field(default_factory=dict)
    seconds: float | None = None
    cost: dict[str, Any] | None = None

    @classmethod
    def read(cls, data: Any, where: Path) -> dict[str, Any]:
        """A summary read from ``where``: refused in one line when a newer version wrote it."""
        if isinstance(data, dict):
            check_schema(data, where)
        return cls.checked(data)
