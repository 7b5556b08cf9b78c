"""One home for how numbers are shown, in the terminal table and in every report: scores, money, language rows."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bench.languages import language_key
from bench.metrics import METRICS


def metric_label(metric: str | None) -> str:
    """The metric's short heading ('choice accuracy'); the name itself for a metric this version does not know."""
    known = METRICS.get(metric or "")
    return known.label if known is not None else (metric or "–")


def format_score(metric: str | None, score: Mapping[str, Any] | None) -> str:
    """'42% [30%–55%]', '31.2 [28.0–34.1]' or '1.52× [1.40–1.61]', as the metric's scale says."""
    if metric is None or not score or score.get("value") is None:
        return "–"
    value, low, high = score["value"], score.get("ci_low"), score.get("ci_high")
    known = METRICS.get(metric)
    if known is not None and known.scale == "percent":
        return f"{value:.0%}" + (f" [{low:.0%}–{high:.0%}]" if low is not None and high is not None else "")
    digits = known.digits if known is not None else 2
    suffix = "×" if known is not None and known.scale == "ratio" else ""
    interval = f" [{low:.{digits}f}–{high:.{digits}f}]" if low is not None and high is not None and low != high else ""
    return f"{value:.{digits}f}{suffix}{interval}"


def on_hundred_scale(metric: str | None, value: float) -> float:
    """A value on the 0-100 scale reports compare on: percentages ×100, chrF++ and BLEU as they are."""
    known = METRICS.get(metric or "")
    return value * 100 if known is not None and known.scale == "percent" else value


def language_group(code: str) -> str:
    """Tasks name one language differently (hau, hau_Latn, ha); they share a row."""
    try:
        return language_key(code)[0]
    except (LookupError, ValueError):
        return code


def money(value: float | None) -> str:
    """US$ with enough digits for tiny per-token prices: 12.3, 0.0456, 3.2e-06."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value == 0:
        return "0"
    if abs(value) >= 1:
        return f"{value:,.2f}"
    return f"{value:.3g}" if abs(value) >= 1e-4 else f"{value:.2e}"


def significant(value: float, digits: int = 2) -> str:
    """``digits`` significant digits, never an exponent: 0.000023, 0.0014, 12."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


def number(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"
