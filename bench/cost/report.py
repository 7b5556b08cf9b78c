"""`accessbench cost RESULTS`: a run's cost per model and language, and against paid APIs, re-priced from its samples."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from bench.config import CostConfig
from bench.cost.pricing import Usage, api_comparison, language_figures, per_language, price, unit_input_price, usage
from bench.cost.profiles import CostSettings, resolve_cost
from bench.languages import display_name
from bench.results import MANIFEST, SAMPLES, SUMMARY, _read_samples, _run_dirs

TAX = "tokenizer_stats"


@dataclass
class CellData:
    model: str  # the folder-safe slug: two runs of one model (say at two dtypes) stay apart
    title: str
    summary: dict[str, Any]
    samples: list[dict[str, Any]]

    @property
    def kind(self) -> str:
        return self.summary.get("task_kind", "")

    @property
    def language(self) -> str:
        return self.summary["language"]


@dataclass
class RunCosts:
    run_dir: Path
    settings: CostSettings
    languages: list[dict[str, Any]]  # one row per model and language
    models: list[dict[str, Any]]  # one row per model: its inference cells' cost and the same tokens on paid APIs
    total: dict[str, float]  # every cell of the run: hardware, electricity, total


def _cells(run_dir: Path) -> list[CellData]:
    cells = []
    for summary_file in sorted(run_dir.glob(f"*/*/*/{SUMMARY}")):
        summary = json.loads(summary_file.read_text(encoding="utf-8"))
        samples = _read_samples(summary_file.parent / SAMPLES, repair=False)
        slug = summary_file.parent.parent.parent.name
        cells.append(CellData(slug, summary.get("model_title") or summary["model"], summary, samples))
    return cells


def _metric(summary: Mapping[str, Any], name: str) -> float | None:
    return (summary.get("metrics", {}).get(name) or {}).get("value")


def _merged(cells: Sequence[CellData]) -> Usage:
    return usage(sample for cell in cells for sample in cell.samples)


def _language_row(model: str, language: str, cells: list[CellData], input_price: float | None, settings: CostSettings) -> dict[str, Any]:
    """One model in one language; words are priced at the model's input-token price over all its languages,
    so that languages differ by their tokens only, not by timing noise between small cells."""
    compute = [cell for cell in cells if cell.kind != TAX]
    priced = price(_merged(compute), settings) if compute else None  # counting tokens alone prices nothing
    tax = [cell for cell in cells if cell.kind == TAX]
    if tax:  # the language-tax task measured these on the model's own tokenizer: reuse them
        figures = language_figures(tax[0].samples)
        figures.update(
            tokens_per_word=_metric(tax[0].summary, "tokens_per_word"),
            tokens_per_char=_metric(tax[0].summary, "tokens_per_char"),
            premium_vs_reference=_metric(tax[0].summary, "token_premium"),
        )
        source = tax[0].summary["task"]
    else:
        texts = [cell for cell in compute if cell.kind == "rolling_loglikelihood"] or compute
        figures = language_figures([sample for cell in texts for sample in cell.samples])
        source = "samples"
    return {
        "model": cells[0].title,
        "language": language,
        "cost": priced,
        "language_figures": {**figures, **per_language(figures, input_price), "source": source},
    }


def run_costs(path: Path, overrides: Mapping[str, str | None] | None = None) -> list[RunCosts]:
    """Re-price every run below ``path`` from its samples, with its own cost settings and any overrides."""
    found = []
    for run_dir in _run_dirs(Path(path)):
        manifest = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
        section = dict((manifest.get("config") or {}).get("cost") or {})
        section.update({key: value for key, value in (overrides or {}).items() if value is not None})
        settings = resolve_cost(CostConfig.model_validate(section))
        cells = _cells(run_dir)
        languages, models = [], []
        for model in dict.fromkeys(cell.model for cell in cells):
            model_cells = [cell for cell in cells if cell.model == model]
            used = _merged([cell for cell in model_cells if cell.kind != TAX] or model_cells)  # counting tokens is no inference
            inference = price(used, settings)
            for language in dict.fromkeys(cell.language for cell in model_cells):
                chosen = [cell for cell in model_cells if cell.language == language]
                languages.append(_language_row(model, language, chosen, unit_input_price(inference), settings))
            names = [model_cells[0].title, model_cells[0].summary.get("model", "")]
            models.append({"model": model_cells[0].title, "cost": inference, "apis": api_comparison(used, settings, names)})
        total = price(_merged(cells), settings)["total"]
        found.append(RunCosts(run_dir, settings, languages, models, total))
    return found


# ---------------------------------------------------------------- printing
def money(value: float | None) -> str:
    if value is None:
        return "–"
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"


def _number(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _per_million(cost: Mapping[str, Any] | None, key: str) -> str:
    block = cost.get(key) if cost else None
    return money(block["total"]) if block else "–"


def language_table(costs: RunCosts) -> Table:
    code = costs.settings.currency.code
    table = Table(title=f"Cost per model and language — {costs.run_dir.name}", caption=Text(_caption(costs)), caption_justify="left")
    headings = [
        ("model", "left"),
        ("language", "left"),
        ("prefill tok/s", "right"),
        ("decode tok/s", "right"),
        (f"{code} / 1M input tok", "right"),
        (f"{code} / 1M output tok", "right"),
        ("tokens / word", "right"),
        ("premium vs eng", "right"),
        (f"{code} / 1,000 words", "right"),
        (f"{code} / sentence", "right"),
        ("kWh / 1M tok", "right"),
        ("gCO2e / 1M tok", "right"),
        ("energy method", "left"),
    ]
    for heading, justify in headings:
        table.add_column(heading, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for row in costs.languages:
        cost, figures = row["cost"] or {}, row["language_figures"]
        throughput = cost.get("throughput") or {}
        premium = figures.get("premium_vs_reference")
        table.add_row(
            row["model"],
            f"{display_name(row['language'])} ({row['language']})",
            _number((throughput.get("prefill_tokens_per_second") or {}).get("overall"), 0),
            _number((throughput.get("decode_tokens_per_second") or {}).get("overall"), 1),
            _per_million(cost, "per_1m_input_tokens"),
            _per_million(cost, "per_1m_output_tokens"),
            _number(figures.get("tokens_per_word")),
            "–" if premium is None else f"{premium:.2f}×",
            money(figures.get("per_1000_words")),
            money(figures.get("per_sentence")),
            _number(cost.get("kwh_per_1m_tokens"), 3),
            _number(cost.get("gco2e_per_1m_tokens"), 0),
            (cost.get("energy") or {}).get("method") or "–",
        )
    return table


def api_table(costs: RunCosts) -> Table:
    code = costs.settings.currency.code
    references = [api.api for api in costs.settings.reference_apis]
    total = costs.total
    table = Table(
        title=f"Per model, inference cells: price per token, and the run's tokens here vs on paid APIs ({code}; API prices from models.dev {costs.models[0]['apis']['prices_as_of'] if costs.models else ''})",
        caption=f"The whole run here: {code} {money(total['total'])} (hardware {money(total['hardware'])}, electricity {money(total['electricity'])}).",
        caption_justify="left",
    )
    headings = (
        "model",
        f"{code} / 1M input tok",
        f"{code} / 1M output tok",
        "input / output tokens",
        f"here ({costs.settings.hardware.name})",
        "same model, cheapest API",
        *references,
    )
    for heading in headings:
        table.add_column(heading, justify="left" if heading == "model" else "right", overflow="fold")
    for row in costs.models:
        cost, apis = row["cost"], row["apis"]
        same = apis["same_model"]
        table.add_row(
            row["model"],
            _per_million(cost, "per_1m_input_tokens"),
            _per_million(cost, "per_1m_output_tokens"),
            f"{cost['tokens']['input']:,} / {cost['tokens']['output']:,}",
            money(cost["total"]["total"]),
            f"{money(same['cost'])} ({same['api']})" if same else "not listed",
            *(money(api["cost"]) for api in apis["reference"]),
        )
    return table


def _caption(costs: RunCosts) -> str:
    settings = costs.settings
    hardware, country, currency = settings.hardware, settings.country, settings.currency
    owned = (
        "rented, electricity included"
        if hardware.electricity_included
        else f"electricity {currency.code} {country.usd_per_kwh * currency.per_usd:.3g}/kWh ({country.price_source}, {country.price_date})"
    )
    carbon = f"{country.gco2e_per_kwh:g} gCO2e/kWh" if country.gco2e_per_kwh is not None else "grid carbon unknown"
    lines = [
        f"Priced as hardware '{hardware.name}' ({hardware.description}) in {country.name}: {owned}; {carbon}.",
        f"1 USD = {currency.per_usd:g} {currency.code} ({currency.rate_date}). Per 1,000 words and per sentence: the language's tokens × the model's input-token price",
        "over all its languages (the second table), so languages differ by their tokens only; the per-language token prices beside them are measured per cell.",
        "premium vs eng: tokens ÷ tokens of the same parallel items in English (model's own tokenizer).",
        "energy method: nvml / rapl are measured; tdp-estimate is an estimate from rated power, not a measurement.",
    ]
    return "\n".join(lines)
