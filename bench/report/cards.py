"""Fitness cards: one printable page per language for people choosing a model, not engineers.

For each model tested in the language: each task's score next to English on the same items, a
plain-language verdict from thresholds in a YAML file (printed on the card), and what 1,000 words
cost on the tested hardware and through the cheapest paid API.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench.errors import UserError, short_list
from bench.formatting import format_score, language_group, metric_label, money
from bench.languages import display_name
from bench.metrics import METRICS, aggregate
from bench.paths import builtin_dir
from bench.report.collect import Cell, Collection, quality
from bench.report.compare import compare_cells, compare_models, difference_text, shared_items
from bench.report.site import environment, page_context, slug

ENGLISH = "en"


class Level(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min: float = Field(ge=0, le=100)
    label: str = Field(pattern="^(good|review|bad)$")
    verdict: str


class TaskVerdicts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    purpose: str
    levels: list[Level] | None = None


class Verdicts(BaseModel):
    """Thresholds (0-100 scale) turning a score into a plain-language verdict."""

    model_config = ConfigDict(extra="forbid")
    min_items: int = Field(30, ge=1)
    levels: list[Level]
    tasks: dict[str, TaskVerdicts] = Field(default_factory=dict)

    def purpose(self, task: str, language: str = "the language") -> str:
        """What the task tells a non-specialist, e.g. 'health translation from English into Hausa'."""
        return (self.tasks[task].purpose if task in self.tasks else task).format(language=language)

    def levels_for(self, task: str) -> list[Level]:
        own = self.tasks[task].levels if task in self.tasks else None
        return sorted(own or self.levels, key=lambda level: -level.min)

    def judge(self, task: str, score: float, items: int, language: str = "the language") -> tuple[str, str]:
        """(label, sentence) for a 0-100 score over ``items`` items in ``language``."""
        level = next((level for level in self.levels_for(task) if score >= level.min), self.levels_for(task)[-1])
        text = level.verdict.format(purpose=self.purpose(task, language))
        if items < self.min_items:
            text += f" — uncertain: only {items} {'item was' if items == 1 else 'items were'} tested (at least {self.min_items} are needed to be sure)"
        return level.label, text


def load_verdicts(path: Path | None = None) -> tuple[Verdicts, Path]:
    path = path or builtin_dir("configs") / "verdicts.yaml"
    if not path.is_file():
        raise UserError(f"verdict thresholds file {path} does not exist; pass an existing YAML with --verdicts (see configs/verdicts.yaml)")
    try:
        return Verdicts.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {}), path
    except yaml.YAMLError as error:
        raise UserError(f"{path} is not valid YAML ({str(error).splitlines()[0]}); fix it or start from configs/verdicts.yaml") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UserError(f"{path}: '{where}' {first['msg'].lower()}; see configs/verdicts.yaml for the format") from None


def languages_in(collection: Collection) -> dict[str, str]:
    """Language key → English name of every language with results."""
    return {cell.language_group: display_name(cell.language) for cell in collection.cells}


def find_language(collection: Collection, requested: str) -> str:
    """The language key of ``requested`` (hau, hau_Latn, Hausa), or a UserError naming the languages there are."""
    key = language_group(requested)
    present = languages_in(collection)
    if key not in present:
        raise UserError(
            f"the results have no {display_name(requested)} ('{requested}'); they have: {short_list(f'{name} ({code})' for code, name in present.items())}"
        )
    return key


def _same_items(cell: Cell, english: Cell) -> dict[str, Any] | None:
    """Both cells' headline scores on the items they share (parallel datasets number items alike)."""
    items = shared_items(cell, english)
    if items is None:
        return None
    metric = METRICS[items.metric]
    return {"items": len(items.first), "score": aggregate(metric, items.first, items.seed), "english": aggregate(metric, items.second, items.seed)}


def model_entries(collection: Collection, language: str, verdicts: Verdicts) -> list[dict[str, Any]]:
    """One entry per model and run tested in ``language``: task rows with verdicts, and costs."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in collection.cells:
        groups.setdefault((cell.slug, str(cell.run.path)), []).append(cell)
    entries = []
    for cells in groups.values():
        here = [cell for cell in cells if cell.language_group == language]
        if not here:
            continue
        rows = []
        for cell in here:
            metric = cell.metric
            score = (cell.summary.get("metrics") or {}).get(metric or "")
            value = quality(metric, score)
            if value is None:
                continue  # token counts and bits per byte describe the language; they are not a job done
            english = next((other for other in cells if other.task == cell.task and other.language_group == ENGLISH), None)
            compared = _same_items(cell, english) if english is not None and language != ENGLISH else None
            gap = compare_cells(cell, english) if compared is not None and english is not None else None
            name = display_name(cell.language)
            label, text = verdicts.judge(cell.task, value, int(cell.summary.get("n_samples") or 0), name)
            rows.append(
                {
                    "task": cell.task,
                    "domain": cell.domain,
                    "purpose": verdicts.purpose(cell.task, name),
                    "metric": metric_label(metric),
                    "score": format_score(metric, score),
                    "n_items": cell.summary.get("n_samples"),
                    "english": _english_text(language, metric, english, compared),
                    "english_items": compared["items"] if compared else None,
                    "english_gap": (
                        f"{difference_text(metric, gap)}: {'a significant gap' if gap.significant() else 'no significant gap'}" if gap is not None else None
                    ),
                    "label": label,
                    "verdict": text,
                }
            )
        rows.sort(key=lambda row: (row["domain"] != "general", row["domain"]))  # one block of verdicts per domain
        figures = collection.language_cost(here[0]) or {}
        model_cost = collection.model_cost(here[0]) or {}
        premium = next((cell.summary["metrics"]["token_premium"]["value"] for cell in here if "token_premium" in (cell.summary.get("metrics") or {})), None)
        entries.append(
            {
                "title": here[0].title,
                "run_id": here[0].run.run_id,
                "hardware": here[0].run.hardware,
                "profile": here[0].settings.hardware.name,
                "country": here[0].settings.country.name,
                "rows": rows,
                "premium": premium,
                "per_1000_words": figures.get("per_1000_words"),
                "tokens_per_word": figures.get("tokens_per_word"),
                **_api_costs(model_cost.get("apis") or {}, figures.get("tokens_per_word")),
            }
        )
        if entries[-1]["cheapest_api"] is not None:
            entries[-1]["cheapest_api"]["measured"] = measured_quality(collection, entries[-1]["cheapest_api"]["api"], language, verdicts)
    return entries


def measured_quality(collection: Collection, api: str, language: str, verdicts: Verdicts) -> list[str]:
    """What an API model scored in ``language`` where it was evaluated (matched by the API it was priced as, or its
    reference); empty when only its price is known."""
    name = display_name(language)
    return [
        f"{verdicts.purpose(cell.task, name)}: {format_score(cell.metric, (cell.summary.get('metrics') or {}).get(cell.metric or ''))} ({cell.column})"
        for cell in collection.cells
        if cell.language_group == language
        and api in (cell.paid_api, cell.summary.get("model"))
        and quality(cell.metric, (cell.summary.get("metrics") or {}).get(cell.metric or "")) is not None
    ]


def task_leads(collection: Collection, language: str, verdicts: Verdicts) -> list[dict[str, str]]:
    """Per task scored in ``language``: whether the best model is significantly better than the next (paired on shared items)."""
    by_task: dict[str, list[tuple[float, Cell]]] = {}
    for cell in collection.cells:
        value = quality(cell.metric, (cell.summary.get("metrics") or {}).get(cell.metric or ""))
        if cell.language_group == language and value is not None:
            by_task.setdefault(cell.task, []).append((value, cell))
    leads = []
    for task, scored in sorted(by_task.items(), key=lambda item: (item[1][0][1].domain != "general", item[0])):
        if len(scored) < 2:
            continue
        (_, first), (_, second) = sorted(scored, key=lambda pair: -pair[0])[:2]
        lead = compare_models([first], [second])
        leads.append(
            {
                "domain": first.domain,
                "purpose": verdicts.purpose(task, display_name(first.language)),
                "status": lead.status,
                "sentence": lead.sentence(first.title, second.title),
            }
        )
    return leads


def _english_text(language: str, metric: str | None, english: Cell | None, compared: dict[str, Any] | None) -> str:
    if language == ENGLISH:
        return "this is English"
    if compared is not None:
        return format_score(metric, compared["english"])
    if english is None:
        return "not tested in English"
    score = (english.summary.get("metrics") or {}).get(metric or "")
    return f"{format_score(metric, score)} (other items: the test sets share none)"


def _api_costs(apis: dict[str, Any], tokens_per_word: float | None) -> dict[str, Any]:
    """1,000 words through the same model's cheapest API listing, and through the cheapest reference API."""

    def per_1000(api: dict[str, Any] | None) -> dict[str, Any] | None:
        if api is None or tokens_per_word is None:
            return None
        return {"name": api.get("name") or api["api"], "api": api["api"], "cost": tokens_per_word * 1000 * api["per_1m_input_tokens"] / 1e6}

    references = [item for item in (per_1000(api) for api in apis.get("reference") or []) if item]
    return {
        "same_model_api": per_1000(apis.get("same_model")),
        "cheapest_api": min(references, key=lambda item: item["cost"]) if references else None,
        "prices_as_of": apis.get("prices_as_of"),
    }


def write_card(collection: Collection, language: str, out: Path, verdicts_path: Path | None = None) -> Path:
    """Write ``card-<language>.html`` (one printable page) into ``out``; return its path."""
    verdicts, source = load_verdicts(verdicts_path)
    key = find_language(collection, language)
    name = languages_in(collection)[key]
    entries = model_entries(collection, key, verdicts)
    tasks = sorted({row["task"] for entry in entries for row in entry["rows"]})
    threshold_tasks = [(verdicts.purpose(task, name), verdicts.levels_for(task)) for task in tasks]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot write the card to {out} ({error.strerror or error}); choose a writable folder with --out DIR") from None
    html = (
        environment()
        .get_template("card.html")
        .render(
            **page_context(script=False),
            title=f"Which AI models can work in {name}? — fitness card",
            root="",
            language=name,
            code=key,
            entries=entries,
            leads=task_leads(collection, key, verdicts),
            thresholds=verdicts.levels,
            task_thresholds=threshold_tasks,
            min_items=verdicts.min_items,
            verdicts_file=source.name,
            runs=collection.runs,
            money=money,
            built_at=datetime.now(UTC).strftime("%Y-%m-%d"),
        )
    )
    path = out / f"card-{slug(key)}.html"
    path.write_text(html, encoding="utf-8")
    return path


def write_cards(collection: Collection, languages: Sequence[str], out: Path, verdicts_path: Path | None = None) -> list[Path]:
    return [write_card(collection, language, out, verdicts_path) for language in languages]
