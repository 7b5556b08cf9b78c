"""Merging results folders into one table of cells: identical cells de-duplicated, conflicting ones flagged.

A cell is identified by (config hash, model, task, language): the same run copied to two places,
or resumed on another machine, is one cell. Two copies whose scores differ are a conflict: the
first is kept and both places are named. All money is re-priced in US$ from the samples, with each
run's own hardware profile and country, so runs priced in other currencies compare.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from bench.cost.pricing import cost_of
from bench.cost.profiles import CostSettings
from bench.cost.report import RunCosts, run_cost
from bench.errors import UserError
from bench.formatting import format_score, language_group, metric_label, on_hundred_scale
from bench.kinds import TaskKind
from bench.languages import display_name
from bench.metrics import METRICS
from bench.results import MANIFEST, READ_ERRORS, StoredCell, read_runs, run_folders, unreadable


def describe_hardware(machine: Mapping[str, Any]) -> str:
    """'NVIDIA H100 (80 GiB)' or 'Intel Xeon … (2 threads, CPU only)' from an environment.hardware() record."""
    gpus = machine.get("gpus") or []
    if gpus:
        return ", ".join(f"{gpu['name']} ({gpu['memory_gib']:g} GiB)" for gpu in gpus)
    return f"{machine.get('cpu') or 'unknown CPU'} ({machine.get('cpu_threads', '?')} threads, CPU only)"


@dataclass
class Run:
    """One run folder: its manifest and its re-priced costs."""

    path: Path
    manifest: dict[str, Any]
    costs: RunCosts

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.path.name)

    @property
    def hardware(self) -> str:
        """The machine the run was (last) measured on, e.g. 'NVIDIA H100 (80 GiB)' or 'Intel Xeon … (2 threads)'."""
        return describe_hardware(self.manifest.get("hardware") or {})

    def machine_hardware(self, node: str) -> str:
        """What one machine of the run is, from the newest invocation record it wrote (by node name, else host name)."""
        records = [record for record in self.manifest.get("invocations", []) if (record.get("node") or record.get("host")) == node]
        return describe_hardware(records[-1].get("hardware") or {}) if records else self.hardware

    @property
    def commands(self) -> list[str]:
        return [invocation.get("command", "") for invocation in self.manifest.get("invocations", [])]


@dataclass
class Cell:
    """One (run, model, task, language) cell."""

    run: Run
    stored: StoredCell
    copies: list[Path] = field(default_factory=list)  # other folders holding the same cell
    conflict: str | None = None

    @property
    def slug(self) -> str:
        return self.stored.key.model

    @property
    def summary(self) -> dict[str, Any]:
        return self.stored.summary

    @property
    def samples(self) -> list[dict[str, Any]]:
        return self.stored.samples

    @property
    def folder(self) -> Path:
        return self.stored.folder

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.summary.get("config_hash") or self.run.run_id, self.slug, self.task, self.language)

    @property
    def recorded_title(self) -> str:
        """The title as the run recorded it (and the cost report names the model)."""
        return self.stored.title

    @property
    def title(self) -> str:
        """The model's name; a local checkpoint folder is named by its last part, not its full path."""
        title = self.recorded_title
        return Path(title).name if title.startswith(("/", "./", "~")) else title

    @property
    def task(self) -> str:
        return self.stored.task

    @property
    def kind(self) -> TaskKind | None:
        return self.stored.kind

    @property
    def language(self) -> str:
        return self.stored.language

    @property
    def domain(self) -> str:
        """What the task is about (health, general, …): recorded in the summary, else the task's spec today."""
        return str(self.summary.get("domain") or task_domain(self.task))

    @property
    def language_group(self) -> str:
        """One key for a language however a task spells it (hau, hau_Latn, ha → 'ha')."""
        return language_group(self.language)

    @property
    def nodes(self) -> list[str]:
        """The machines that computed its samples, most samples first (none for results written before nodes were recorded)."""
        counts = self.summary.get("nodes") or {}
        return sorted(counts, key=lambda node: -counts[node])

    @cached_property
    def settings(self) -> CostSettings:
        """The cost settings of the machine that computed it."""
        return self.run.costs.settings_for(self.samples)

    @property
    def metric(self) -> str | None:
        """The headline (first) metric."""
        return next(iter(self.summary.get("metrics") or {}), None)

    @property
    def endpoint(self) -> dict[str, Any] | None:
        """A served model's endpoint (URL, model id, API, price; never a key); None for a model run in-process."""
        endpoint = (self.summary.get("model_info") or {}).get("endpoint")
        return endpoint if isinstance(endpoint, dict) else None

    @property
    def paid_api(self) -> str | None:
        """The paid API a model was priced as, per token (e.g. 'openai:gpt-4o-mini'); None for local and self-hosted models."""
        price = (self.endpoint or {}).get("price")
        return str(price["api"]) if isinstance(price, dict) and price.get("api") else None

    @property
    def machine(self) -> str:
        """Where the model ran: the run's machine, or the paid API or endpoint that served it."""
        if self.paid_api:
            return f"paid API {self.paid_api}"
        if self.endpoint:
            return f"served at {self.endpoint.get('base_url')}, client on {self.run.hardware}"
        return "; ".join(dict.fromkeys(self.run.machine_hardware(node) for node in self.nodes)) or self.run.hardware

    @property
    def scoring(self) -> str | None:
        """Multiple choice: 'loglikelihood' (choices scored) or 'generative' (a letter asked for and parsed)."""
        scoring = self.summary.get("scoring")
        return str(scoring) if scoring else None

    @property
    def column(self) -> str:
        """The headline metric's label, saying when multiple choice was answered generatively (never one column unlabelled)."""
        label = metric_label(self.metric)
        return f"{label}, letter asked" if self.scoring == "generative" else label

    @cached_property
    def cost(self) -> dict[str, Any] | None:
        """This cell's own cost block in US$ (None for counting tokens, which is not inference)."""
        if not self.stored.priced or not self.samples:
            return None
        return cost_of(self.samples, self.settings, self.summary.get("model_info"))


def peak_memory_mb(cell: Cell) -> float | None:
    """The most memory (RAM or GPU) a cell used on the machine that ran the model; None for a served model (its
    server's memory is not ours to measure: the meter sees only the client)."""
    if cell.endpoint is not None or cell.cost is None:
        return None
    memory = cell.cost.get("memory") or {}
    return max((value for value in (memory.get("peak_rss_mb"), memory.get("peak_vram_mb")) if value is not None), default=None)


def task_domain(task: str) -> str:
    """A built-in task's domain; 'general' for a task this checkout does not know (results written before domains)."""
    from bench.tasks import all_tasks

    spec = all_tasks().get(task)
    return spec.domain if spec is not None else "general"


def subgroup_rows(cell: Cell) -> list[dict[str, Any]]:
    """The headline metric per subgroup value (e.g. specialty: Cardiology), with item counts and intervals."""
    metric = cell.metric
    rows = []
    for grouping, values in (cell.summary.get("subgroups") or {}).items():
        for value, entry in values.items():
            score = (entry.get("metrics") or {}).get(metric or "") or {}
            rows.append({"grouping": grouping, "value": value, "n": entry.get("n"), "score": score.get("value"), "score_text": format_score(metric, score)})
    return rows


def quality(metric: str | None, score: Mapping[str, Any] | None) -> float | None:
    """A higher-is-better score on a 0-100 scale (accuracy in %, chrF++ and BLEU as they are); None otherwise."""
    known = METRICS.get(metric or "")
    if known is None or not score or score.get("value") is None or known.higher_is_better is not True:
        return None
    return on_hundred_scale(metric, float(score["value"]))


def size_label(parameters: int | None) -> str:
    if not parameters:
        return "?"
    if parameters >= 1e9:
        return f"{parameters / 1e9:.1f}B"
    return f"{parameters / 1e6:.0f}M" if parameters >= 1e6 else f"{parameters / 1e3:.0f}K"


@dataclass
class Collection:
    """Every distinct cell of the results folders given, with the runs they came from."""

    runs: list[Run]
    cells: list[Cell]
    duplicates: int  # identical cells met more than once and kept once
    conflicts: list[str]  # one line per cell whose copies disagree
    skipped: list[str] = field(default_factory=list)  # one line per run or cell that could not be read, and why

    def language_cost(self, cell: Cell) -> dict[str, Any] | None:
        """The model's per-language figures (tokens per word, US$ per 1,000 words) from its run's cost report."""
        for row in cell.run.costs.languages:
            if row["model"] == cell.recorded_title and row["language"] == cell.language:
                return row["language_figures"]
        return None

    def model_cost(self, cell: Cell) -> dict[str, Any] | None:
        """The model's inference cost over its run, with the same tokens on paid APIs."""
        return next((row for row in cell.run.costs.models if row["model"] == cell.recorded_title), None)

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per cell: what the leaderboard table, the CSV and the Parquet file show."""
        return [self.row(cell) for cell in self.cells]

    def row(self, cell: Cell) -> dict[str, Any]:
        info = cell.summary.get("model_info") or {}
        metric = cell.metric
        score = (cell.summary.get("metrics") or {}).get(metric or "") or {}
        cost = cell.cost or {}
        tokens = sum((cost.get("tokens") or {}).values()) if cost else 0
        throughput = cost.get("throughput") or {}
        rate_key = "decode_tokens_per_second" if cell.kind is not None and cell.kind.generates else "prefill_tokens_per_second"
        figures = self.language_cost(cell) or {}
        peak_mb = peak_memory_mb(cell)
        return {
            "model": cell.title,
            "model_slug": cell.slug,
            "model_ref": cell.summary.get("model"),
            "parameters": info.get("parameters"),
            "size": size_label(info.get("parameters")),
            "quantisation": info.get("quantization") or info.get("dtype") or "?",
            "dtype": info.get("dtype"),
            "device": info.get("device"),
            "machine": ", ".join(cell.nodes),
            "hardware": cell.machine,
            "hardware_profile": "per token" if cell.paid_api else cell.settings.hardware.name,
            "country": cell.settings.country.iso3,
            "run_id": cell.run.run_id,
            "config_hash": cell.key[0],
            "task": cell.task,
            "task_kind": cell.kind.name if cell.kind is not None else cell.summary.get("task_kind"),
            "domain": cell.domain,
            "language": cell.language,
            "language_name": display_name(cell.language),
            "language_group": cell.language_group,
            "metric": metric,
            "metric_column": cell.column,
            "scoring": cell.scoring,
            "higher_is_better": METRICS[metric].higher_is_better if metric else None,
            "score": score.get("value"),
            "ci_low": score.get("ci_low"),
            "ci_high": score.get("ci_high"),
            "score_text": format_score(metric, score),
            "quality": quality(metric, score),
            "n_samples": cell.summary.get("n_samples"),
            "tokens_per_second": (throughput.get(rate_key) or {}).get("overall"),
            "usd_per_1m_tokens": cost["total"]["total"] / tokens * 1e6 if tokens else None,
            "usd_per_1000_words": figures.get("per_1000_words"),
            "tokens_per_word": figures.get("tokens_per_word"),
            "gco2e_per_1m_tokens": cost.get("gco2e_per_1m_tokens"),
            "energy_method": (cost.get("energy") or {}).get("method"),
            "peak_memory_gb": peak_mb / 1024 if peak_mb is not None else None,
            "conflict": cell.conflict,
            "results_folder": str(cell.folder),
        }

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows())


def _scores(summary: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: (metric.get("value"), metric.get("ci_low"), metric.get("ci_high"), metric.get("n")) for name, metric in (summary.get("metrics") or {}).items()
    }


def _unusable(cell: Cell) -> str | None:
    """Why a cell written by another version cannot be shown (None when it can)."""
    metrics = cell.summary.get("metrics")
    if not isinstance(metrics, dict) or not all(isinstance(score, dict) for score in metrics.values()):
        return "its summary has no metrics in this version's form"
    unknown = [name for name in metrics if name not in METRICS]
    if unknown:
        return f"metric '{unknown[0]}' is unknown to this version of accessbench"
    if not all(isinstance(sample.get("values"), dict) for sample in cell.samples):
        return "a sample has no per-sample values"
    return None


def collect(paths: Sequence[Path | str]) -> Collection:
    """Read every run below each path (a run folder or a folder of runs) and merge their cells.

    A run or cell that cannot be read (damaged, or written by another version) is left out with one
    line in ``skipped`` naming it; the rest are reported.
    """
    if not paths:
        raise UserError("no results folders given; pass one or more folders written by `accessbench run`")
    runs: list[Run] = []
    cells: dict[tuple[str, str, str, str], Cell] = {}
    duplicates, conflicts, skipped = 0, [], []
    for path in paths:
        if not run_folders(path):
            raise UserError(f"no runs in {path}; pass a folder written by `accessbench run` (it holds {MANIFEST})")
        stored_runs, unread = read_runs(path)
        skipped.extend(unread)
        for stored in stored_runs:
            try:
                run = Run(stored.path, stored.manifest, run_cost(stored, {"currency": "USD"}))
            except READ_ERRORS as error:
                skipped.append(f"{stored.path}: {unreadable(error)}; that run is left out")
                continue
            runs.append(run)
            for data in stored.cells:
                cell = Cell(run, data)
                problem = _unusable(cell)
                if problem is not None:
                    skipped.append(f"{cell.folder}: {problem}; that cell is left out")
                    continue
                known = cells.get(cell.key)
                if known is None:
                    cells[cell.key] = cell
                    continue
                known.copies.append(cell.folder)
                if _scores(known.summary) == _scores(cell.summary):
                    duplicates += 1
                else:
                    known.conflict = f"{cell.folder} has other scores for the same config than {known.folder}"
                    conflicts.append(f"{cell.title} · {cell.task} · {cell.language}: {known.conflict}; the first is shown")
    collection = Collection(runs, [], duplicates, conflicts, skipped)
    for cell in cells.values():
        try:
            collection.row(cell)  # every field a page shows can be derived
        except READ_ERRORS as error:
            skipped.append(f"{cell.folder}: {unreadable(error)}; that cell is left out")
            continue
        collection.cells.append(cell)
    return collection
