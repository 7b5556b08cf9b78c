"""The table printed at the end of a run: one row per model and language, one column per score."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from bench.formatting import format_score, language_group, metric_label, significant
from bench.languages import display_name
from bench.metrics import METRICS

MARKS = ("", "†", "‡", "§", "¶")  # which task of a shared column a cell comes from


def _columns(summaries: Sequence[dict[str, Any]], row_of: Callable[[dict[str, Any]], tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """(headline metric, tasks) per column. Tasks with the same headline metric share a column when no row has both
    (e.g. TICO-19 translation where it has the language, FLORES for the others)."""
    rows_of: dict[str, set[tuple[str, str]]] = {}
    headline: dict[str, str] = {}
    for summary in summaries:
        metric = next(iter(summary["metrics"]), None)
        if metric is not None:
            headline.setdefault(summary["task"], metric)
            rows_of.setdefault(summary["task"], set()).add(row_of(summary))
    columns: list[tuple[str, list[str]]] = []
    for task, metric in headline.items():
        shared = next(
            (tasks for m, tasks in columns if m == metric and len(tasks) < len(MARKS) and not any(rows_of[task] & rows_of[other] for other in tasks)), None
        )
        if shared is not None:
            shared.append(task)
        else:
            columns.append((metric, [task]))
    return columns


def results_table(
    summaries: Sequence[dict[str, Any]], title: str = "Results", per_1000_words: Mapping[tuple[str, str], float] | None = None, currency: str = "USD"
) -> Table:
    """Model × language rows; one column per headline (first) metric with its 95 % interval, and the cost of 1,000 words when given.

    ``per_1000_words`` (in ``currency``) is keyed by (model title, language group); see ``words_cost``.
    """

    def row_of(summary: dict[str, Any]) -> tuple[str, str]:
        return summary.get("model_title") or summary["model"], language_group(summary["language"])

    columns = _columns(summaries, row_of)
    rows: dict[tuple[str, str], dict[tuple[str, str], str]] = {}
    codes: dict[tuple[str, str], list[str]] = {}
    for summary in summaries:
        key = row_of(summary)
        row = rows.setdefault(key, {})
        codes.setdefault(key, [])
        if summary["language"] not in codes[key]:
            codes[key].append(summary["language"])
        for metric, score in summary["metrics"].items():
            row[(summary["task"], metric)] = format_score(metric, score)
    used = sorted({metric for metric, _ in columns if metric in METRICS}, key=list(METRICS).index)
    arrows = {True: "higher is better", False: "lower is better", None: "descriptive"}
    lines = [f"{METRICS[m].label}: {METRICS[m].description} ({arrows[METRICS[m].higher_is_better]})" for m in used]
    if per_1000_words:
        lines.append(
            f"{currency} per 1,000 words: the model's tokens per word in the language × its price per input token on this run's hardware and electricity"
        )
    lines += [f"{mark} {task}" for _, tasks in columns if len(tasks) > 1 for mark, task in zip(MARKS[1:], tasks[1:])]
    table = Table(
        title=title, caption=Text("\n".join([*lines, "[low–high]: 95% confidence interval; all metrics are in each summary.json"])), caption_justify="left"
    )
    table.add_column("model", style="bold", overflow="fold")
    table.add_column("language", overflow="fold")
    for metric, tasks in columns:
        known = METRICS.get(metric)
        arrow = {True: " ↑", False: " ↓", None: ""}[known.higher_is_better if known is not None else None]
        names = " · ".join(f"{mark}{task}" for mark, task in zip(MARKS, tasks))
        table.add_column(f"{metric_label(metric)}{arrow}\n({names})", justify="right", overflow="fold")
    if per_1000_words:
        table.add_column(f"{currency} per 1,000 words ↓", justify="right", overflow="fold")
    for key, row in rows.items():
        languages = codes[key]
        cells = [next((f"{row[(task, metric)]}{mark}" for mark, task in zip(MARKS, tasks) if (task, metric) in row), "") for metric, tasks in columns]
        if per_1000_words:
            price = per_1000_words.get(key)
            cells.append("–" if price is None else significant(price))
        table.add_row(key[0], f"{display_name(languages[0])} ({', '.join(_most_specific(languages))})", *cells)
    return table


def _most_specific(codes: list[str]) -> list[str]:
    """The codes a row's tasks use, less those another code spells out (swh beside swh_Latn)."""
    return [code for code in codes if not any(other.startswith(f"{code}_") for other in codes)]


def words_cost(language_rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], float]:
    """(model title, language group) → cost of 1,000 words, from ``bench.cost.report.run_costs`` rows (the language-tax task's figures first)."""
    found: dict[tuple[str, str], tuple[bool, float]] = {}
    for row in language_rows:
        figures = row.get("language_figures") or {}
        value = figures.get("per_1000_words")
        if value is None:
            continue
        key, from_tax = (row["model"], language_group(row["language"])), figures.get("source") != "samples"
        if key not in found or (from_tax and not found[key][0]):
            found[key] = (from_tax, float(value))
    return {key: value for key, (_, value) in found.items()}
