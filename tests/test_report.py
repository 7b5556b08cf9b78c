"""Reports from real runs of the tiny random model: merging, the static site, Markdown/CSV/Parquet, cards, recommendations."""

from __future__ import annotations

import json
import shutil
from html import unescape
from pathlib import Path

import pandas as pd
import pytest

from bench.errors import UserError
from bench.report.collect import collect
from bench.report.site import pareto, write_site


def test_identical_cells_are_merged_and_conflicts_flagged(two_results: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = two_results
    merged = collect([a, b, a])  # a given twice: its cells are identical
    once = collect([a, b])
    assert len(merged.cells) == len(once.cells) == 3 * 3 + 3 * 2 and merged.duplicates == 9 and not merged.conflicts
    copy = tmp_path / "copy"
    shutil.copytree(a, copy)
    summary = next(copy.rglob("mgsm_symbolic_bpb/eng/summary.json"))
    data = json.loads(summary.read_text())
    data["metrics"]["bits_per_byte"]["value"] += 1.0
    summary.write_text(json.dumps(data))
    conflicted = collect([a, copy])
    assert len(conflicted.cells) == 9 and len(conflicted.conflicts) == 1 and "mgsm_symbolic_bpb · eng" in conflicted.conflicts[0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no runs in"):
        collect([tmp_path / "empty"])


def test_site_markdown_csv_and_parquet(two_results: tuple[Path, Path], tmp_path: Path) -> None:
    index = write_site(collect(list(two_results)), tmp_path / "site")
    site = index.parent
    html = unescape(index.read_text(encoding="utf-8"))
    assert "Content-Security-Policy" in html and "default-src 'none'" in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert 'id="scatter-plot"' in html and 'class="frontier"' in html and "Hausa" in html
    model_pages = list((site / "models").glob("*.html"))
    assert len(model_pages) == 1
    page = model_pages[0].read_text(encoding="utf-8")
    assert "<script>window.__xss" not in page and "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in page
    assert "tiny-a-" in (site / "runs.html").read_text(encoding="utf-8") and "bench" in (site / "runs.html").read_text(encoding="utf-8")
    table = pd.read_csv(site / "leaderboard.csv")
    assert len(table) == 15 and {
        "model",
        "size",
        "quantisation",
        "hardware",
        "task",
        "language",
        "score",
        "ci_low",
        "ci_high",
        "tokens_per_second",
        "usd_per_1m_tokens",
        "usd_per_1000_words",
        "gco2e_per_1m_tokens",
    } <= set(table.columns)
    assert len(pd.read_parquet(site / "leaderboard.parquet")) == 15
    markdown = (site / "leaderboard.md").read_text(encoding="utf-8").splitlines()
    assert markdown[0].startswith("| model | size |") and markdown[1].startswith("|---|")
    assert all(line.count("|") == markdown[0].count("|") for line in markdown[2:] if line.startswith("|"))


def test_pareto_frontier_keeps_points_nothing_beats() -> None:
    points = [{"cost": 1.0, "quality": 10.0}, {"cost": 2.0, "quality": 5.0}, {"cost": 3.0, "quality": 30.0}, {"cost": 0.5, "quality": 2.0}]
    assert [p["cost"] for p in pareto(points)] == [0.5, 1.0, 3.0]


def test_card_shows_scores_beside_english_costs_and_stated_thresholds(two_results: tuple[Path, Path], tmp_path: Path) -> None:
    from bench.report.cards import write_card

    card = unescape(write_card(collect(list(two_results)), "Hausa", tmp_path).read_text(encoding="utf-8"))
    assert "Which AI models can work in Hausa?" in card and "maths word problems" in card and "same items in English" in card
    assert "not usable for maths word problems" in card and "uncertain: only 3 items" in card
    assert "score 60 or more: “usable with human review for …”" in card and "US$" in card and "DeepSeek" in card
    assert "@media print" in card and "<script" not in card
    thresholds = tmp_path / "strict.yaml"
    thresholds.write_text("levels:\n  - {min: 0, label: good, verdict: 'fine for {purpose}'}\n", encoding="utf-8")
    assert "fine for mgsm_symbolic" in write_card(collect([two_results[0]]), "hau", tmp_path / "custom", thresholds).read_text(encoding="utf-8")
    thresholds.write_text("levels:\n  - {min: 0, label: great, verdict: x}\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"strict.yaml: 'levels.0.label'"):
        write_card(collect([two_results[0]]), "hau", tmp_path, thresholds)
    with pytest.raises(UserError, match=r"no Yoruba \('yor'\); they have: English \(en\), Hausa \(ha\), Swahili \(sw\)"):
        write_card(collect([two_results[0]]), "yor", tmp_path)


def test_recommend_ranks_what_fits_and_explains_the_rest(two_results: tuple[Path, Path]) -> None:
    from bench.report.recommend import recommend

    collection = collect(list(two_results))
    name, fits, excluded = recommend(collection, "swh")
    assert name == "Swahili" and len(fits) == 1 and fits[0].tasks == ["maths word problems"]
    assert [c.reasons for c in excluded] == [["not tested in Swahili"]]  # run b had no Swahili
    _, fits, excluded = recommend(collection, "hau", max_usd_per_1000_words=1e-9, max_memory_gb=0.001)
    assert not fits and len(excluded) == 2
    assert all("per 1,000 words, over your US$ 1.00e-09" in c.reasons[0] and "GB of memory, over your 0.001 GB" in c.reasons[1] for c in excluded)


def test_an_api_model_is_labelled_priced_per_token_and_its_measured_quality_reaches_the_card(two_results: tuple[Path, Path], tmp_path: Path) -> None:
    """A served model answering multiple choice generatively and priced as a paid API: its own leaderboard column
    label, 'paid API' as its machine, no memory figure, and the card's API line quoting what it scored."""
    from bench.report.cards import write_card
    from bench.report.recommend import recommend
    from bench.report.site import markdown

    before = unescape(write_card(collect([two_results[1]]), "hau", tmp_path / "before").read_text(encoding="utf-8"))
    assert "— price only, quality not measured" in before
    api_run = tmp_path / "api"
    shutil.copytree(two_results[1], api_run)
    cheapest = "deepseek:deepseek-chat"
    for summary_file in api_run.rglob("summary.json"):
        summary = json.loads(summary_file.read_text())
        price = {"api": cheapest, "input_per_1m": 0.27, "output_per_1m": 1.1}
        summary["model_info"]["endpoint"] = {"base_url": "https://api.deepseek.com/v1", "model": "deepseek-chat", "price": price}
        if summary["task"] == "mgsm_symbolic":  # as a multiple-choice summary records it (this run has none)
            summary["scoring"] = "generative"
        summary_file.write_text(json.dumps(summary))
    collection = collect([two_results[0], api_run])  # run b itself would be the same cells (same config), merged away
    api_rows = [row for row in collection.rows() if row["results_folder"].startswith(str(api_run))]
    assert api_rows and {row["hardware"] for row in api_rows} == {f"paid API {cheapest}"} and {row["peak_memory_gb"] for row in api_rows} == {None}
    assert {row["metric_column"] for row in api_rows if row["task"] == "mgsm_symbolic"} == {
        "accuracy, letter asked"
    } and "(accuracy, letter asked)" in markdown(collection.rows())
    card = unescape(write_card(collection, "hau", tmp_path / "after").read_text(encoding="utf-8"))
    assert "its quality measured here in Hausa: maths word problems:" in card and "(accuracy, letter asked)" in card
    _, fits, excluded = recommend(collection, "hau", max_memory_gb=0.001)
    assert len(excluded) == 1 and "over your 0.001 GB" in excluded[0].reasons[0]  # the local model's measured memory
    assert [candidate.hardware for candidate in fits] == [f"paid API {cheapest}"]  # needs none of the user's memory
