"""The table printed at the end of a run: one row per model and language, one column per score."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from bench.languages import display_name, language_key
from bench.metrics import METRICS

# Short, plain-language column headings; the caption explains each one.
LABELS = {
    "acc": "choice accuracy",
    "acc_norm_bytes": "accuracy, byte-normalised",
    "chrf_pp": "chrF++",
    "bleu": "BLEU",
    "f1": "token F1",
    "exact_match_number": "accuracy",
    "exact_match": "exact match",
    "bits_per_byte": "bits per byte",
    "nats_per_token": "nats per token",
    "perplexity_per_word": "perplexity per word",
    "tokens_per_word": "tokens per word",
    "tokens_per_char": "tokens per char",
    "tokens_per_byte": "tokens per byte",
    "token_premium": "token premium vs English",
}
PERCENT = {"acc", "acc_norm_bytes", "f1", "exact_match_number", "exact_match"}
ONE_DECIMAL = {"chrf_pp", "bleu"}  # sacrebleu's 0-100 scales


def _format(metric: str, score: dict[str, Any]) -> str:
    value, low, high = score.get("value"), score.get("ci_low"), score.get("ci_high")
    if value is None:
        return "–"
    if metric in PERCENT:
        text = f"{value:.0%}"
        return f"{text} [{low:.0%}–{high:.0%}]" if low is not None and high is not None else text
    suffix = "×" if metric == "token_premium" else ""
    digits = 1 if metric in ONE_DECIMAL else 2
    text = f"{value:.{digits}f}{suffix}"
    return f"{text} [{low:.{digits}f}–{high:.{digits}f}]" if low is not None and high is not None and low != high else text


def _language_group(code: str) -> str:
    """Tasks name one language differently (hau, hau_Latn, ha); they share a table row."""
    try:
        return language_key(code)[0]
    except (LookupError, ValueError):
        return code


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
        key = (summary.get("model_title") or summary["model"], _language_group(summary["language"]))
        row = rows.setdefault(key, {})
        codes.setdefault(key, [])
        if summary["language"] not in codes[key]:
            codes[key].append(summary["language"])
        for metric, score in summary["metrics"].items():
            row[(summary["task"], metric)] = _format(metric, score)
    used = sorted({metric for _, metric in columns}, key=list(LABELS).index)
    arrows = {True: "higher is better", False: "lower is better", None: "descriptive"}
    caption = "\n".join(f"{LABELS[m]}: {METRICS[m].description} ({arrows[METRICS[m].higher_is_better]})" for m in used)
    table = Table(title=title, caption=Text(caption + "\n[low–high]: 95% confidence interval; all metrics are in each summary.json"), caption_justify="left")
    table.add_column("model", style="bold", overflow="fold")
    table.add_column("language", overflow="fold")
    for task, metric in columns:
        arrow = {True: " ↑", False: " ↓", None: ""}[METRICS[metric].higher_is_better]
        table.add_column(f"{LABELS[metric]}{arrow}\n({task})", justify="right", overflow="fold")
    for key, row in rows.items():
        names = codes[key]
        table.add_row(key[0], f"{display_name(names[0])} ({', '.join(names)})", *(row.get(column, "") for column in columns))
    return table
