"""The end-of-run table: tasks with the same headline metric on different languages share a column; the cost of words."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from bench.table import results_table, words_cost


def _summary(task: str, language: str, metric: str, value: float) -> dict[str, Any]:
    return {"model": "m", "model_title": "Model", "task": task, "language": language, "metrics": {metric: {"value": value, "ci_low": value, "ci_high": value}}}


def _text(table: Any) -> str:
    console = Console(width=400, record=True)
    console.print(table)
    return console.export_text()


def test_translation_tasks_on_different_languages_share_one_column_marked_by_source() -> None:
    summaries = [
        _summary("sib200", "eng_Latn", "acc", 0.5),
        _summary("sib200", "hau_Latn", "acc", 0.25),
        _summary("tico19_x_eng", "hau", "chrf_pp", 12.3),
        _summary("flores_x_eng", "yor_Latn", "chrf_pp", 9.1),
        _summary("sib200", "yor_Latn", "acc", 0.1),
    ]
    prices = words_cost(
        [
            {"model": "Model", "language": "hau", "language_figures": {"per_1000_words": 0.9, "source": "samples"}},
            {"model": "Model", "language": "hau_Latn", "language_figures": {"per_1000_words": 0.002, "source": "flores_tax"}},
            {"model": "Model", "language": "yor_Latn", "language_figures": {"per_1000_words": 2.345e-05, "source": "flores_tax"}},
        ]
    )
    assert list(prices.values()) == [0.002, 2.345e-05]  # the language-tax task's figure wins over a prompt's
    text = _text(results_table(summaries, per_1000_words=prices, currency="NGN"))
    assert "(flores_x_eng)" not in text and "(tico19_x_eng)" not in text  # one column, not one per task
    assert "tico19_x_eng · †flores_x_eng" in text and "9.1†" in text
    assert "NGN per 1,000 words" in text and "0.002" in text
    hausa = next(line for line in text.splitlines() if "Hausa" in line)
    assert "25%" in hausa and "12.3" in hausa
    assert "Hausa (hau_Latn)" in hausa  # TICO-19's bare "hau" adds nothing to the code with its script
    assert "0.000023" in next(line for line in text.splitlines() if "Yoruba" in line)  # two significant digits, no exponent


def test_tasks_with_the_same_metric_on_the_same_language_keep_their_own_columns() -> None:
    summaries = [_summary("tico19_x_eng", "hau", "chrf_pp", 12.3), _summary("flores_x_eng", "hau_Latn", "chrf_pp", 9.1)]
    text = _text(results_table(summaries))
    assert "(tico19_x_eng)" in text and "(flores_x_eng)" in text and "per 1,000 words" not in text
