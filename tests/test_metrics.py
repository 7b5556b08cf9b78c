"""Metrics: answer extraction, corpus-level aggregation and bootstrap intervals."""

from __future__ import annotations

import pytest

from bench.metrics import METRICS, aggregate, ascii_digits, extract_number, normalise_number, text_stats, token_f1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so the answer is \\boxed{42}.", "42"),
        ("First 3 then 4, finally \\boxed{1,234}", "1234"),
        ("\\boxed{12} wait no \\boxed{\\frac{1}{2}} ... \\boxed{7.50}", "7.5"),
        ("The total is 140 minutes.", "140"),
        ("#### -3", "-3"),
        ("jumla ni ٤٢", "42"),
        ("उत्तर १२५ है", "125"),
        ("no digits here", None),
    ],
)
def test_extract_number(text: str, expected: str | None) -> None:
    assert extract_number(text) == expected


def test_normalise_number() -> None:
    assert normalise_number("10.0") == "10"
    assert normalise_number("1,000") == "1000"
    assert normalise_number("abc") is None


def test_ascii_digits_leave_ascii_text_alone() -> None:
    assert ascii_digits("abc 123") == "abc 123"
    assert ascii_digits("၁၂") == "12"  # Myanmar digits


def test_text_stats_counts_bytes_not_characters_for_ge_ez() -> None:
    stats = text_stats("ሰላም ዓለም")
    assert stats == {"words": 2, "chars": 7, "bytes": 6 * 3 + 1}


def test_mean_metric_and_interval() -> None:
    samples = [{"exact_match_number": v} for v in [1, 0, 1, 1, 0, 1, 0, 1]]
    result = aggregate(METRICS["exact_match_number"], samples, seed=1)
    assert result["value"] == pytest.approx(5 / 8)
    assert 0 <= result["ci_low"] < 5 / 8 < result["ci_high"] <= 1
    assert result["n"] == 8
    assert aggregate(METRICS["exact_match_number"], samples, seed=1) == result  # seeded: reproducible


def test_ratio_metric_is_a_ratio_of_sums_not_a_mean_of_ratios() -> None:
    samples = [{"neg_log2_prob": 10.0, "bytes": 10}, {"neg_log2_prob": 90.0, "bytes": 30}]
    assert aggregate(METRICS["bits_per_byte"], samples)["value"] == pytest.approx(100 / 40)


def test_perplexity_per_word_is_exponentiated() -> None:
    samples = [{"neg_logprob": 2.0, "words": 1}, {"neg_logprob": 4.0, "words": 2}]
    assert aggregate(METRICS["perplexity_per_word"], samples)["value"] == pytest.approx(2.718281828**2, rel=1e-6)


def test_missing_values_are_left_out_and_empty_gives_none() -> None:
    samples = [{"tokens": 10, "reference_tokens": 5}, {"tokens": 7, "reference_tokens": None}]
    result = aggregate(METRICS["token_premium"], samples)
    assert result["value"] == pytest.approx(2.0) and result["n"] == 1
    assert aggregate(METRICS["token_premium"], [])["value"] is None


# ---------------------------------------------------------------- the task suite's metrics
HYPOTHESES = ["The cat sat on the mat.", "Ina kwana, yaya gida?", "", "Ẹ kú àárọ̀ o", "ሰላም ዓለም"]
REFERENCES = ["The cat is on the mat.", "Ina kwana? Yaya gida?", "Nothing here", "Ẹ kú àárọ̀", "ሰላም ለዓለም"]


@pytest.mark.parametrize(("name", "corpus_score"), [("chrf_pp", "corpus_chrf"), ("bleu", "corpus_bleu")])
def test_corpus_metrics_equal_sacrebleu_on_known_strings(name: str, corpus_score: str) -> None:
    import sacrebleu

    metric = METRICS[name]
    samples = [{metric.column: metric.sentence_stats(h, r)} for h, r in zip(HYPOTHESES, REFERENCES)]
    expected = getattr(sacrebleu, corpus_score)(HYPOTHESES, [REFERENCES], **({"word_order": 2} if name == "chrf_pp" else {})).score
    result = aggregate(metric, samples, seed=3)
    assert result["value"] == pytest.approx(expected, abs=1e-9)
    assert result["ci_low"] <= result["value"] <= result["ci_high"] and result["n"] == 5
    assert aggregate(metric, samples, seed=3) == result


def test_chrf_pp_is_corpus_level_not_a_mean_of_sentences() -> None:
    import sacrebleu

    metric = METRICS["chrf_pp"]
    samples = [{metric.column: metric.sentence_stats(h, r)} for h, r in zip(HYPOTHESES, REFERENCES)]
    sentence_mean = sum(sacrebleu.sentence_chrf(h, [r], word_order=2).score for h, r in zip(HYPOTHESES, REFERENCES)) / 5
    assert aggregate(metric, samples)["value"] != pytest.approx(sentence_mean, abs=0.01)


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [("Doha", "Doha", 1.0), ("the city of Doha.", "Doha", 0.5), ("Abuja", "Lagos", 0.0), ("The Southeastern region", "southeastern", 2 / 3), ("", "", 1.0)],
)
def test_token_f1_uses_squad_normalisation(prediction: str, reference: str, expected: float) -> None:
    assert token_f1(prediction, reference) == pytest.approx(expected)


def test_accuracy_metrics_are_means() -> None:
    samples = [{"acc": 1.0, "acc_norm_bytes": 0.0}, {"acc": 0.0, "acc_norm_bytes": 0.0}, {"acc": 1.0, "acc_norm_bytes": 1.0}]
    assert aggregate(METRICS["acc"], samples)["value"] == pytest.approx(2 / 3)
    assert aggregate(METRICS["acc_norm_bytes"], samples)["value"] == pytest.approx(1 / 3)


def test_adding_a_metric_is_one_object_that_the_table_tasks_and_formatting_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from bench.formatting import format_score
    from bench.kinds import KINDS
    from bench.metrics import METRICS, Metric
    from bench.table import results_table

    metric = Metric("starts_right", "share of outputs starting like the reference", ("starts_right",), True, "starts right", frozenset({"generate"}), "percent",
                    per_sample=lambda output, reference: float(output.strip()[:1] == reference.strip()[:1]))  # fmt: skip
    monkeypatch.setitem(METRICS, "starts_right", metric)
    assert "starts_right" in KINDS["generate"].metrics and "starts_right" not in KINDS["multiple_choice"].metrics
    score = {"value": 0.5, "ci_low": 0.25, "ci_high": 0.75}
    assert format_score("starts_right", score) == "50% [25%–75%]"
    console = Console(width=200, record=True)
    console.print(results_table([{"model": "m", "language": "eng", "task": "t", "metrics": {"starts_right": score}}]))
    text = " ".join(console.export_text().replace("│", " ").replace("┃", " ").split())
    assert "starts right ↑" in text and "50% [25%–75%]" in text and "share of outputs starting like the reference (higher is better)" in text
    # a metric this version does not know (written by another one) is shown by name, not a crash
    console.print(results_table([{"model": "m", "language": "eng", "task": "t", "metrics": {"renamed_metric": {"value": 1.5}}}]))
    assert "renamed_metric" in console.export_text()
