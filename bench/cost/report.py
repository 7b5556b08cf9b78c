"""`accessbench cost RESULTS`: a run's cost per model and language, and against paid APIs, re-priced from its samples."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from bench.cost.pricing import api_comparison, cost_of, language_figures, per_language, unit_input_price, usage
from bench.cost.profiles import CostSettings, recorded_cost
from bench.formatting import money, number
from bench.languages import display_name
from bench.results import READ_ERRORS, StoredCell, StoredRun, read_runs, unreadable


@dataclass
class RunCosts:
    run_dir: Path
    settings: CostSettings  # the run's (its newest invocation's)
    languages: list[dict[str, Any]]  # one row per model and language
    models: list[dict[str, Any]]  # one row per model: its inference cells' cost and the same tokens on paid APIs
    total: dict[str, float]  # every cell of the run: hardware, electricity, paid APIs' charges, total
    run: StoredRun  # the manifest and the readable cells
    machines: dict[str, CostSettings]  # each machine's own settings, by the node name its samples carry

    def settings_for(self, samples: Iterable[Mapping[str, Any]]) -> CostSettings:
        """The settings of the machine that computed most of ``samples`` (the run's when they name none)."""
        return machine_settings(samples, self.machines, self.settings)


def machine_settings(samples: Iterable[Mapping[str, Any]], machines: Mapping[str, CostSettings], default: CostSettings) -> CostSettings:
    counts = Counter(str(sample["node"]) for sample in samples if sample.get("node"))
    return machines.get(counts.most_common(1)[0][0], default) if counts else default


def recorded_machines(manifest: Mapping[str, Any], overrides: Mapping[str, str | None]) -> dict[str, CostSettings]:
    """Each machine's cost settings, from the newest invocation record it wrote (by node name, else host name)."""
    found: dict[str, CostSettings] = {}
    read: dict[str, CostSettings] = {}  # workers of one sweep mostly record the same settings: read each once
    for record in manifest.get("invocations", []):
        name, cost = record.get("node") or record.get("host"), record.get("cost")
        if name and isinstance(cost, dict):
            key = json.dumps(cost, sort_keys=True, default=str)
            found[str(name)] = read[key] if key in read else read.setdefault(key, recorded_cost({**manifest, "cost": cost}, overrides))
    return found


def _metric(summary: Mapping[str, Any], name: str) -> float | None:
    return (summary.get("metrics", {}).get(name) or {}).get("value")


def _samples(cells: Sequence[StoredCell]) -> list[dict[str, Any]]:
    return [sample for cell in cells for sample in cell.samples]


def _language_row(language: str, cells: list[StoredCell], input_price: float | None, settings: CostSettings) -> dict[str, Any]:
    """One model in one language; words are priced at the model's input-token price over all its languages,
    so that languages differ by their tokens only, not by timing noise between small cells."""
    compute = [cell for cell in cells if cell.priced]
    priced = cost_of(_samples(compute), settings, cells[0].summary.get("model_info")) if compute else None  # counting tokens alone prices nothing
    tax = [cell for cell in cells if not cell.priced]
    if tax:  # the language-tax task measured these on the model's own tokenizer: reuse them
        figures = language_figures(tax[0].samples)
        figures.update(
            tokens_per_word=_metric(tax[0].summary, "tokens_per_word"),
            tokens_per_char=_metric(tax[0].summary, "tokens_per_char"),
            premium_vs_reference=_metric(tax[0].summary, "token_premium"),
        )
        source = tax[0].summary["task"]
    else:
        texts = [cell for cell in compute if cell.kind is not None and not cell.kind.prompted] or compute  # the language's own texts, no prompt
        figures = language_figures([sample for cell in texts for sample in cell.samples])
        source = "samples"
    return {
        "model": cells[0].title,
        "language": language,
        "cost": priced,
        "language_figures": {**figures, **per_language(figures, input_price), "source": source},
    }


def run_cost(run: StoredRun, overrides: Mapping[str, str | None] | None = None) -> RunCosts:
    """Re-price one run from its samples, with the cost settings its manifest recorded and any overrides."""
    settings = recorded_cost(run.manifest, overrides or {})
    machines = recorded_machines(run.manifest, overrides or {})
    languages, models, total = [], [], {"hardware": 0.0, "electricity": 0.0, "api": 0.0, "total": 0.0}
    for model in dict.fromkeys(cell.key.model for cell in run.cells):
        model_cells = [cell for cell in run.cells if cell.key.model == model]
        own = machine_settings(_samples(model_cells), machines, settings)  # the machine that ran the model
        info = model_cells[0].summary.get("model_info")
        samples = _samples([cell for cell in model_cells if cell.priced] or model_cells)  # counting tokens is no inference
        inference = cost_of(samples, own, info)
        for language in dict.fromkeys(cell.language for cell in model_cells):
            chosen = [cell for cell in model_cells if cell.language == language]
            languages.append(_language_row(language, chosen, unit_input_price(inference), own))
        names = [model_cells[0].title, model_cells[0].summary.get("model", "")]
        models.append({"model": model_cells[0].title, "cost": inference, "apis": api_comparison(usage(samples), own, names)})
        everything = cost_of(_samples(model_cells), own, info)["total"]
        total = {part: total[part] + everything.get(part, 0.0) for part in total}
    return RunCosts(run.path, settings, languages, models, total, run, machines)


def run_costs(path: Path, overrides: Mapping[str, str | None] | None = None) -> tuple[list[RunCosts], list[str]]:
    """Every run below ``path`` re-priced, and one line per run or cell that could not be read (the rest are priced)."""
    runs, skipped = read_runs(path)
    found = []
    for run in runs:
        try:
            found.append(run_cost(run, overrides))
        except READ_ERRORS as error:
            skipped.append(f"{run.path}: {unreadable(error)}; that run is left out")
    return found, skipped


# ---------------------------------------------------------------- printing
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
            number((throughput.get("prefill_tokens_per_second") or {}).get("overall"), 0),
            number((throughput.get("decode_tokens_per_second") or {}).get("overall"), 1),
            _per_million(cost, "per_1m_input_tokens"),
            _per_million(cost, "per_1m_output_tokens"),
            number(figures.get("tokens_per_word")),
            "–" if premium is None else f"{premium:.2f}×",
            money(figures.get("per_1000_words")),
            money(figures.get("per_sentence")),
            number(cost.get("kwh_per_1m_tokens"), 3),
            number(cost.get("gco2e_per_1m_tokens"), 0),
            (cost.get("energy") or {}).get("method") or "–",
        )
    return table


def api_table(costs: RunCosts) -> Table:
    code = costs.settings.currency.code
    references = [api.api for api in costs.settings.reference_apis]
    total = costs.total
    table = Table(
        title=f"Per model, inference cells: price per token, and the run's tokens here vs on paid APIs ({code}; API prices from models.dev {costs.models[0]['apis']['prices_as_of'] if costs.models else ''})",
        caption=f"The whole run here: {code} {money(total['total'])} (hardware {money(total['hardware'])}, electricity {money(total['electricity'])}"
        + (f", paid APIs {money(total['api'])}" if total["api"] else "")
        + ").",
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
