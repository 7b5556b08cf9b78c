"""Health tasks through the whole pipeline with tiny models: summaries, the site's domain filter and subgroup tables."""

from __future__ import annotations

import json
from html import unescape
from pathlib import Path

import pandas as pd

from bench.report.collect import collect
from bench.report.site import write_site


def test_summaries_carry_domain_and_subgroups(health_results: Path) -> None:
    summaries = [json.loads(path.read_text(encoding="utf-8")) for path in health_results.rglob("summary.json")]
    assert {(s["task"], s["language"]) for s in summaries} == {("afrimed_qa", "eng"), ("tico19_eng_x", "hau"), ("sib200", "eng_Latn"), ("sib200", "hau_Latn")}
    assert {s["task"]: s["domain"] for s in summaries} == {"afrimed_qa": "health", "tico19_eng_x": "health", "sib200": "general"}
    afrimed = next(s for s in summaries if s["task"] == "afrimed_qa")
    groups = afrimed["subgroups"]["options"]
    assert sum(group["n"] for group in groups.values()) == afrimed["n_samples"] == 8
    assert all(0 <= group["metrics"]["acc"]["value"] <= 1 for group in groups.values())


def test_site_filters_and_groups_by_domain_and_shows_subgroups(health_results: Path, tmp_path: Path) -> None:
    index = write_site(collect([health_results]), tmp_path / "site")
    html = unescape(index.read_text(encoding="utf-8"))
    assert '<select class="filter" name="domain">' in html and '<option value="health">health</option>' in html
    assert html.count('data-domain="health"') == 4 and html.count('data-domain="general"') == 4
    assert html.index("Domain: general") < html.index("Domain: health")  # heatmaps grouped by domain
    page = unescape(next((index.parent / "models").glob("*.html")).read_text(encoding="utf-8"))
    assert "Scores by subgroup" in page and "afrimed_qa · English" in page
    table = pd.read_csv(index.parent / "leaderboard.csv")
    assert set(table["domain"]) == {"health", "general"}
    assert "afrimed_qa [health] (choice accuracy)" in (index.parent / "leaderboard.md").read_text(encoding="utf-8")


def test_a_run_logged_to_a_file_prints_one_line_per_finished_cell(tiny_model_dir: Path, tmp_path: Path) -> None:
    from conftest import run_cli

    result = run_cli("run", "--model", str(tiny_model_dir), "-t", "mgsm_symbolic_bpb,mgsm_symbolic_tax", "-l", "hau", "--limit", "2", "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("finished ")]
    assert len(lines) == 2, result.stderr
    assert "mgsm_symbolic_bpb · hau: bits_per_byte " in lines[0] and "(2 items, " in lines[0] and lines[0].endswith(" s)")
