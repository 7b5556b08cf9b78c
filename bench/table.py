"""The table printed at the end of a run: one row per model and language, one column per score."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from bench.formatting import format_score, language_group, metric_label
from bench.languages import display_name
from bench.metrics import METRICS


def results_table(summaries: Sequence[dict[str, Any]], title: str = "Results") -> Table:
    """Model × language rows; one column per task with its headline (first) metric and 95 % interval."""
    columns: list[tuple[str, str]] = []
    for summary in summaries:
        headline = next(iter(summary["metrics"]), None)
        if headline is not None and (summary["task"], headline) not in columns:
            columns.append((summary["task"], headline))
    rows: dict[tuple[str, str], dict[tuple[str, str], str]] = {}
    codes: dict[tuple[str, str], list[str]] = {}
    for summary in summaries:
        key = (summary.get("model_title") or summary["model"], language_group(summary["language"]))
        row = rows.setdefault(key, {})
        codes.setdefault(key, [])
        if summary["language"] not in codes[key]:
            codes[key].append(summary["language"])
        for metric, score in summary["metrics"].items():
            row[(summary["task"], metric)] = format_score(metric, score)
    used = sorted({metric for _, metric in columns if metric in METRICS}, key=list(METRICS).index)
    arrows = {True: "higher is better", False: "lower is better", None: "descriptive"}
    caption = "\n".join(f"{METRICS[m].label}: {METRICS[m].description} ({arrows[METRICS[m].higher_is_better]})" for m in used)
    table = Table(title=title, caption=Text(caption + "\n[low–high]: 95% confidence interval; all metrics are in each summary.json"), caption_justify="left")
    table.add_column("model", style="bold", overflow="fold")
    table.add_column("language", overflow="fold")
    for task, metric in columns:
        known = METRICS.get(metric)
        arrow = {True: " ↑", False: " ↓", None: ""}[known.higher_is_better if known is not None else None]
        table.add_column(f"{metric_label(metric)}{arrow}\n({task})", justify="right", overflow="fold")
    for key, row in rows.items():
        names = codes[key]
        table.add_row(key[0], f"{display_name(names[0])} ({', '.join(names)})", *(row.get(column, "") for column in columns))
    return table
