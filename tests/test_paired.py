"""Paired comparisons: the bootstrap against hand computations, and in recommend and the cards on real runs of two tiny models."""

from __future__ import annotations

import json
from html import unescape
from pathlib import Path

import numpy as np
import pytest

from bench.metrics import METRICS, paired_bootstrap, resample_picks
from bench.report.cards import write_card
from bench.report.collect import collect
from bench.report.compare import compare_cells, compare_models
from bench.report.recommend import leader_lead, recommend


def test_paired_bootstrap_matches_a_hand_computation() -> None:
    a = [{"acc": v} for v in (1.0, 1.0, 0.0, 1.0)]
    b = [{"acc": v} for v in (0.0, 1.0, 0.0, 0.0)]
    picks = np.array([[0, 1, 2, 3], [0, 0, 1, 1], [2, 2, 3, 3], [1, 2, 2, 3]])
    # by hand: A - B per resample = .75-.25, 1-.5, .5-0, .5-.25 = .5, .5, .5, .25; mean .4375; observed .5
    # |d_r - mean| = .0625, .0625, .0625, .1875: none reaches .5, so p = (1 + 0) / (4 + 1)
    result = paired_bootstrap(METRICS["acc"], a, b, picks=picks)
    assert result is not None
    assert (result.n, result.a, result.b, result.difference) == (4, 0.75, 0.25, 0.5)
    assert result.p_value == pytest.approx(0.2)
    assert result.ci_low == pytest.approx(0.25 + 0.075 * 0.25) and result.ci_high == pytest.approx(0.5)  # numpy's linear percentiles


def test_the_same_resampling_is_used_for_both_sides() -> None:
    same = [{"acc": float(i % 2)} for i in range(40)]
    tied = paired_bootstrap(METRICS["acc"], same, same, seed=3)
    assert tied is not None and tied.difference == 0 and tied.ci_low == tied.ci_high == 0 and tied.p_value == 1.0
    better = paired_bootstrap(METRICS["acc"], [{"acc": 1.0}] * 40, same, seed=3)
    assert better is not None and better.p_value == pytest.approx(1 / 1001) and better.significant()
    # a corpus metric: per-sentence statistics summed over the same resampled sentences on both sides
    stats = METRICS["chrf_pp"].sentence_stats
    hyp_a = [{"chrf_pp_stats": stats("the patient has a fever", "the patient has a fever")} for _ in range(5)]
    hyp_b = [{"chrf_pp_stats": stats("patient fever", "the patient has a fever")} for _ in range(5)]
    corpus = paired_bootstrap(METRICS["chrf_pp"], hyp_a, hyp_b, seed=1)
    assert corpus is not None and corpus.a == pytest.approx(100.0) and corpus.ci_low == corpus.ci_high == pytest.approx(corpus.difference)


def _values(path: Path) -> dict[str, dict]:
    return {json.loads(line)["doc_id"]: json.loads(line)["values"] for line in path.read_text(encoding="utf-8").splitlines()}


def test_two_models_compared_by_hand_on_the_same_samples(health_results: Path) -> None:
    collection = collect([health_results])
    first, second = sorted((cell for cell in collection.cells if cell.task == "sib200" and cell.language == "eng_Latn"), key=lambda cell: cell.slug)
    comparison = compare_cells(first, second)
    mine, theirs = _values(first.folder / "samples.jsonl"), _values(second.folder / "samples.jsonl")
    ids = sorted(mine)
    assert sorted(theirs) == ids and comparison is not None and comparison.n == len(ids) == 8
    x = np.array([mine[i]["acc"] for i in ids])
    y = np.array([theirs[i]["acc"] for i in ids])
    picks = resample_picks(len(ids), 1234)  # the run's seed
    d = x[picks].mean(axis=1) - y[picks].mean(axis=1)
    observed = x.mean() - y.mean()
    assert comparison.difference == pytest.approx(observed)
    assert (comparison.ci_low, comparison.ci_high) == pytest.approx(tuple(np.percentile(d, [2.5, 97.5])))
    assert comparison.p_value == pytest.approx((1 + np.sum(np.abs(d - d.mean()) >= abs(observed) - 1e-12)) / (len(d) + 1))


def test_recommend_says_tied_or_better_and_filters_by_domain(health_results: Path) -> None:
    collection = collect([health_results])
    name, fits, excluded = recommend(collection, "hau", domain="health")
    assert name == "Hausa" and len(fits) == 2 and not excluded
    assert all(cell.task == "tico19_eng_x" for fit in fits for cell in fit.cells)
    lead = leader_lead(fits)
    assert lead is not None and lead.status in ("significantly better", "statistically tied") and lead.details[0][0] == "tico19_eng_x"
    assert "p = " in lead.sentence(fits[0].model, fits[1].model) and "8 shared items" in lead.sentence(fits[0].model, fits[1].model)
    _, general, _ = recommend(collection, "hau", domain="general")
    assert all(cell.task == "sib200" for fit in general for cell in fit.cells)
    _, _, left_out = recommend(collection, "eng", domain="agriculture")
    assert all("not tested in English on any agriculture task" in c.reasons[0] for c in left_out)
    assert compare_models(fits[0].cells, []).status == "not comparable"


def test_card_gives_one_verdict_per_domain_and_task_and_tests_the_leader(health_results: Path, tmp_path: Path) -> None:
    card = unescape(write_card(collect([health_results]), "Hausa", tmp_path).read_text(encoding="utf-8"))
    assert "General domain" in card and "Health domain" in card and card.index("General domain") < card.index("Health domain")
    assert "for health translation from English into Hausa" in card
    assert "Is the best model really better?" in card and ("statistically tied" in card or "significantly better" in card)
    english = unescape(write_card(collect([health_results]), "eng", tmp_path).read_text(encoding="utf-8"))
    assert "clinical questions needing African medical knowledge" in english
