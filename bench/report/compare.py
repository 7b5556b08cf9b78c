"""Paired comparisons of two results on the items both scored: two models in one language, or a language and English.

Both sides are resampled together (the same items in each bootstrap draw), so a difference is
judged against the variation of the items they share, not of each side alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.formatting import metric_label, on_hundred_scale
from bench.metrics import METRICS, PairedComparison, paired_bootstrap
from bench.report.collect import Cell

ALPHA = 0.05


@dataclass(frozen=True)
class SharedItems:
    """Two cells' per-sample values on the items both scored (matched by id), for their common headline metric."""

    metric: str
    first: list[dict[str, Any]]
    second: list[dict[str, Any]]
    seed: int


def shared_items(first: Cell, second: Cell) -> SharedItems | None:
    """None when the cells have different headline metrics or no item in common."""
    metric = first.metric
    if metric is None or second.metric != metric:
        return None
    mine = {sample["doc_id"]: sample["values"] for sample in first.samples}
    theirs = {sample["doc_id"]: sample["values"] for sample in second.samples}
    shared = sorted(set(mine) & set(theirs))
    if not shared:
        return None
    return SharedItems(metric, [mine[i] for i in shared], [theirs[i] for i in shared], int(first.run.manifest.get("seed") or 0))


def compare_cells(first: Cell, second: Cell) -> PairedComparison | None:
    """``first`` minus ``second`` on their shared items (same task metric; items matched by id), or None."""
    items = shared_items(first, second)
    return paired_bootstrap(METRICS[items.metric], items.first, items.second, items.seed) if items else None


def points(metric: str | None, value: float) -> str:
    """A difference on the 0-100 scale of the cards: '+12.5 points' for accuracy, '+3.1 chrF++' otherwise."""
    known = METRICS.get(metric or "")
    unit = "points" if known is not None and known.scale == "percent" else (metric_label(metric) if known is not None else "")
    return f"{on_hundred_scale(metric, value):+.1f} {unit}".rstrip()


def difference_text(metric: str | None, comparison: PairedComparison) -> str:
    """'+12.5 points [4.0 to 21.0], p = 0.004, 50 shared items'."""
    scale = on_hundred_scale(metric, 1.0)
    return (
        f"{points(metric, comparison.difference)} [{comparison.ci_low * scale:+.1f} to {comparison.ci_high * scale:+.1f}], "
        f"p = {comparison.p_value:.3f}, {comparison.n} shared item{'s' if comparison.n != 1 else ''}"
    )


@dataclass
class Lead:
    """How a leader compares with the runner-up, task by task."""

    status: str  # significantly better | statistically tied | mixed | runner-up significantly better | not comparable
    details: list[tuple[str, str]]  # (task, "+12.5 points [...], p = ..., n shared items")

    def sentence(self, leader: str, runner_up: str) -> str:
        if self.status == "not comparable":
            return f"{leader} and {runner_up} share no scored items, so which is better cannot be tested."
        verb = {
            "significantly better": f"{leader} is significantly better than {runner_up}",
            "statistically tied": f"{leader} and {runner_up} are statistically tied (no difference is significant at 5 %); treat them as equal",
            "mixed": f"{leader} and {runner_up} are each significantly better at different jobs",
            "runner-up significantly better": f"{runner_up} is significantly better than {leader} where they can be compared",
        }[self.status]
        return f"{verb}: " + "; ".join(f"{task} {text}" for task, text in self.details) + "."


def compare_models(leader: Sequence[Cell], runner_up: Sequence[Cell]) -> Lead:
    """The leader's cells against the runner-up's, task by task (same task and language), paired on shared items."""
    details, better, worse = [], 0, 0
    for cell in leader:
        other = next((o for o in runner_up if o.task == cell.task and o.language_group == cell.language_group), None)
        comparison = compare_cells(cell, other) if other is not None else None
        if comparison is None:
            continue
        higher = METRICS[cell.metric or ""].higher_is_better is not False
        gain = comparison.difference if higher else -comparison.difference
        if comparison.significant(ALPHA):
            better, worse = better + (gain > 0), worse + (gain < 0)
        details.append((cell.task, difference_text(cell.metric, comparison)))
    if not details:
        return Lead("not comparable", [])
    status = "mixed" if better and worse else "significantly better" if better else "runner-up significantly better" if worse else "statistically tied"
    return Lead(status, details)
