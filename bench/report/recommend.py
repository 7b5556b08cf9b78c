"""`accessbench recommend`: the models tested in a language that fit a budget, best first, and why the others do not."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.formatting import money
from bench.languages import display_name
from bench.report.cards import find_language, load_verdicts
from bench.report.collect import Cell, Collection, peak_memory_mb, quality
from bench.report.compare import Lead, compare_models


@dataclass
class Candidate:
    model: str
    hardware: str  # the pricing profile and the machine measured
    quality: float | None  # mean 0-100 score over the scored tasks in the language
    tasks: list[str] = field(default_factory=list)  # what was scored, in plain words
    usd_per_1000_words: float | None = None
    memory_gb: float | None = None  # peak measured (RAM or GPU memory) over the model's cells
    reasons: list[str] = field(default_factory=list)  # why it was excluded; empty when it fits
    cells: list[Cell] = field(default_factory=list, repr=False)  # its scored cells in the language (and domain)


def _memory_gb(cells: list[Cell]) -> float | None:
    peaks = [peak for cell in cells if (peak := peak_memory_mb(cell)) is not None]
    return max(peaks) / 1024 if peaks else None


def recommend(
    collection: Collection, language: str, max_usd_per_1000_words: float | None = None, max_memory_gb: float | None = None, domain: str | None = None
) -> tuple[str, list[Candidate], list[Candidate]]:
    """(language name, models that fit ranked by quality, models excluded with their reasons); ``domain`` keeps that domain's tasks only."""
    key = find_language(collection, language)
    verdicts, _ = load_verdicts()
    name = display_name(key)
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in collection.cells:
        groups.setdefault((cell.slug, str(cell.run.path)), []).append(cell)
    fits: list[Candidate] = []
    excluded: list[Candidate] = []
    for cells in groups.values():
        first = cells[0]
        here = [cell for cell in cells if cell.language_group == key and (domain is None or cell.domain == domain)]
        scored = [(cell, q) for cell in here if (q := quality(cell.metric, (cell.summary.get("metrics") or {}).get(cell.metric or ""))) is not None]
        figures = collection.language_cost(here[0]) if here else None
        candidate = Candidate(
            model=first.title,
            hardware=first.machine if first.paid_api else f"{first.settings.hardware.name} ({first.machine})",
            quality=sum(q for _, q in scored) / len(scored) if scored else None,
            tasks=[verdicts.purpose(cell.task, name) for cell, _ in scored],
            cells=[cell for cell, _ in scored],
            usd_per_1000_words=(figures or {}).get("per_1000_words"),
            memory_gb=_memory_gb(cells),
        )
        if not here:
            candidate.reasons.append(f"not tested in {name}" + (f" on any {domain} task" if domain else ""))
        if here and not scored:
            candidate.reasons.append(f"no task with a quality score was run in {name} (only token counts or bits per byte)")
        if not here:
            excluded.append(candidate)
            continue
        if max_usd_per_1000_words is not None:
            if candidate.usd_per_1000_words is None:
                candidate.reasons.append(f"its cost per 1,000 words of {name} was not measured")
            elif candidate.usd_per_1000_words > max_usd_per_1000_words:
                candidate.reasons.append(f"costs US$ {money(candidate.usd_per_1000_words)} per 1,000 words, over your US$ {money(max_usd_per_1000_words)}")
        if max_memory_gb is not None and not first.paid_api:  # a paid API needs none of the user's memory
            if candidate.memory_gb is None:
                candidate.reasons.append("its memory use was not measured" + (" (it is served by an endpoint)" if first.endpoint else ""))
            elif candidate.memory_gb > max_memory_gb:
                candidate.reasons.append(f"needed {candidate.memory_gb:.1f} GB of memory, over your {max_memory_gb:g} GB")
        (excluded if candidate.reasons else fits).append(candidate)
    fits.sort(key=lambda c: (-(c.quality or 0.0), c.usd_per_1000_words if c.usd_per_1000_words is not None else float("inf")))
    return name, fits, excluded


def leader_lead(fits: list[Candidate]) -> Lead | None:
    """Whether the first model is significantly better than the second on the items both scored (None with fewer than two)."""
    if len(fits) < 2:
        return None
    return compare_models(fits[0].cells, fits[1].cells)
