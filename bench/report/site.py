"""The static leaderboard site: index (table, heatmaps, scatter), one page per model, the runs' manifests,
and leaderboard.md / .csv / .parquet.

Every page works from file:// and on any static host: CSS and JS are inlined from ``assets/``, a
Content-Security-Policy forbids every request (only the inlined script, by its hash, may run), and
every model output and user string is escaped by jinja2's autoescape.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from bench.errors import UserError
from bench.formatting import metric_label, money, number
from bench.languages import display_name
from bench.metrics import METRICS
from bench.report.collect import Cell, Collection, subgroup_rows

ASSETS = Path(__file__).resolve().parent / "assets"
SAMPLES_PER_CELL = 5
TEXT_LIMIT = 1500  # characters of a prompt or output shown on a model page


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "item"


def environment() -> Environment:
    env = Environment(loader=PackageLoader("bench.report", "templates"), autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters.update(money=money, number=number)
    return env


def page_context(script: bool = True) -> dict[str, Any]:
    """CSS and JS inlined, and a policy that lets the page fetch nothing and run only that script."""
    css = (ASSETS / "style.css").read_text(encoding="utf-8")
    js = (ASSETS / "leaderboard.js").read_text(encoding="utf-8") if script else ""
    script_src = f"'sha256-{base64.b64encode(hashlib.sha256(js.encode('utf-8')).digest()).decode()}'" if script else "'none'"
    csp = (
        f"default-src 'none'; script-src {script_src}; style-src 'unsafe-inline'; img-src data:; "
        "font-src 'none'; connect-src 'none'; media-src 'none'; object-src 'none'; frame-src 'none'; "
        "base-uri 'none'; form-action 'none'"
    )
    return {"css": css, "script": js, "with_script": script, "csp": csp}


def _model_page(cell: Cell) -> str:
    return f"{slug(cell.slug)}.html"


def _heat(fraction: float) -> tuple[str, str]:
    """Background and text colour for a 0-1 position within a task's range (light to dark blue)."""
    fraction = min(1.0, max(0.0, fraction))
    light, dark = (235, 243, 252), (23, 78, 166)
    colour = tuple(round(a + (b - a) * fraction) for a, b in zip(light, dark))
    return f"rgb({colour[0]}, {colour[1]}, {colour[2]})", "#ffffff" if fraction > 0.55 else "#1b1f24"


def heatmaps(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One model × language grid per task whose headline metric is a higher-is-better score, grouped by domain."""
    maps = []
    for domain, task in dict.fromkeys(sorted(((row["domain"], row["task"]) for row in rows), key=lambda pair: (pair[0] != "general", pair))):
        scored = [row for row in rows if row["task"] == task and row["quality"] is not None]
        if not scored:
            continue
        languages = list(dict.fromkeys(row["language_group"] for row in scored))
        low, high = min(row["quality"] for row in scored), max(row["quality"] for row in scored)
        grid: dict[str, dict[str, dict[str, str]]] = {}
        for row in scored:
            label = f"{row['model']} · {row['hardware_profile']}"
            fraction = (row["quality"] - low) / (high - low) if high > low else 0.5
            colour, ink = _heat(fraction)
            short = row["score_text"].split(" [")[0]
            grid.setdefault(label, {}).setdefault(
                row["language_group"], {"colour": colour, "ink": ink, "short": short, "text": f"{row['language_name']}: {row['score_text']}"}
            )
        names = [(code, display_name(code)) for code in languages]
        maps.append(
            {
                "task": task,
                "domain": domain,
                "metric_label": metric_label(scored[0]["metric"]),
                "languages": names,
                "rows": [(model, [cells.get(code) for code in languages]) for model, cells in grid.items()],
            }
        )
    return maps


def pareto(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Points no other point beats on both cost (lower) and quality (higher), cheapest first."""
    frontier, best = [], -math.inf
    for point in sorted(points, key=lambda p: (p["cost"], -p["quality"])):
        if point["quality"] > best:
            frontier.append(point)
            best = point["quality"]
    return frontier


def scatter_points(collection: Collection) -> list[dict[str, Any]]:
    """One point per model and run: mean quality (0-100) over its scored cells, US$ per 1M tokens over its inference cells."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in collection.cells:
        groups.setdefault((cell.slug, cell.run.run_id + str(cell.run.path)), []).append(cell)
    points = []
    for cells in groups.values():
        rows = [collection.row(cell) for cell in cells]
        qualities = [row["quality"] for row in rows if row["quality"] is not None]
        model_cost = collection.model_cost(cells[0])
        if not qualities or model_cost is None:
            continue
        cost = model_cost["cost"]
        tokens = cost["tokens"]["input"] + cost["tokens"]["output"]
        if not tokens or cost["total"]["total"] <= 0:
            continue
        points.append(
            {
                "label": cells[0].title,
                "hardware": f"{rows[0]['hardware_profile']} ({rows[0]['hardware']})",
                "quality": sum(qualities) / len(qualities),
                "cost": cost["total"]["total"] / tokens * 1e6,
                "n": len(qualities),
                "frontier": False,
            }
        )
    for point in pareto(points):
        point["frontier"] = True
    return points


def scatter_svg(points: Sequence[dict[str, Any]]) -> str:
    """An inline SVG: quality against US$ per 1M tokens (log scale), the Pareto frontier as a dashed staircase.

    Labels are escaped here, since this markup is inserted as it is.
    """
    from markupsafe import escape

    width, height, left, right, top, bottom = 720, 420, 64, 24, 20, 52
    if not points:
        return '<p class="muted">No model has both a quality score and a measured cost.</p>'
    costs = [math.log10(point["cost"]) for point in points]
    low_x, high_x = math.floor(min(costs)), math.ceil(max(costs))
    high_x = high_x if high_x > low_x else low_x + 1
    top_y = max(10.0, math.ceil(max(point["quality"] for point in points) / 10) * 10)

    def x(cost: float) -> float:
        return left + (math.log10(cost) - low_x) / (high_x - low_x) * (width - left - right)

    def y(quality: float) -> float:
        return top + (1 - quality / top_y) * (height - top - bottom)

    parts = [
        f'<svg class="scatter" id="scatter-plot" viewBox="0 0 {width} {height}" role="img" aria-label="quality versus cost with the Pareto frontier" xmlns="http://www.w3.org/2000/svg">'
    ]
    for decade in range(low_x, high_x + 1):
        gx = x(10.0**decade)
        parts.append(
            f'<line class="grid" x1="{gx:.1f}" y1="{top}" x2="{gx:.1f}" y2="{height - bottom}"/><text x="{gx:.1f}" y="{height - bottom + 16}" text-anchor="middle">{money(10.0**decade)}</text>'
        )
    for step in range(0, 11):
        value = top_y * step / 10
        if step % 2 == 0:
            parts.append(
                f'<line class="grid" x1="{left}" y1="{y(value):.1f}" x2="{width - right}" y2="{y(value):.1f}"/><text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:g}</text>'
            )
    parts.append(
        f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}"/><line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}"/>'
    )
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">US$ per 1M tokens (log scale) — cheaper to the left</text>')
    parts.append(
        f'<text transform="translate(16 {(top + height - bottom) / 2}) rotate(-90)" text-anchor="middle">mean quality score (0–100) — better up</text>'
    )
    frontier = sorted((point for point in points if point["frontier"]), key=lambda p: p["cost"])
    if frontier:
        steps = [(x(frontier[0]["cost"]), y(frontier[0]["quality"]))]
        for point in frontier[1:]:  # a staircase: what the cheaper point offers holds until a better one is reached
            steps += [(x(point["cost"]), steps[-1][1]), (x(point["cost"]), y(point["quality"]))]
        steps.append((width - right, steps[-1][1]))  # paying more than the last frontier point buys nothing better
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in steps)
        parts.append(f'<polyline class="frontier" points="{path}"><title>Pareto frontier: no other model is both cheaper and better</title></polyline>')
    for point in points:
        px, py = x(point["cost"]), y(point["quality"])
        title = escape(f"{point['label']} on {point['hardware']}: quality {point['quality']:.1f}, US$ {money(point['cost'])} per 1M tokens")
        parts.append(f'<circle class="point{" on-frontier" if point["frontier"] else ""}" cx="{px:.1f}" cy="{py:.1f}" r="6"><title>{title}</title></circle>')
        parts.append(f'<text x="{px + 9:.1f}" y="{py - 7:.1f}">{escape(point["label"])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _clip(text: Any) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + " …"


def _sample_groups(collection: Collection, cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """Generated (or chosen) outputs next to their references, a few per cell."""
    groups = []
    for cell in cells:
        if cell.kind is None or not cell.kind.prompted:
            continue
        items = []
        for sample in cell.samples[:SAMPLES_PER_CELL]:
            values = sample.get("values") or {}
            score = ", ".join(f"{name} {values[name]:.2f}" for name in (cell.summary.get("metrics") or {}) if isinstance(values.get(name), (int, float)))
            items.append(
                {
                    "doc_id": sample.get("doc_id"),
                    "input": _clip(sample.get("input")),
                    "output": _clip(sample.get("output")),
                    "target": _clip(sample.get("target")),
                    "score": score,
                }
            )
        groups.append({"task": cell.task, "language": cell.language, "language_name": display_name(cell.language), "run_id": cell.run.run_id, "entries": items})
    return groups


def _subgroups(cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """Per cell with a breakdown: its headline metric per subgroup (specialty, country, …)."""
    return [
        {"task": cell.task, "language_name": display_name(cell.language), "metric_label": metric_label(cell.metric), "rows": rows}
        for cell in cells
        if (rows := subgroup_rows(cell))
    ]


def _table_rows(collection: Collection) -> list[dict[str, Any]]:
    rows = []
    for cell in collection.cells:
        row = collection.row(cell)
        row.update(page=_model_page(cell), metric_label=cell.column, run_anchor=_run_anchor(cell.run.run_id, cell.run.path))
        rows.append(row)
    return rows


def _run_anchor(run_id: str, path: Path) -> str:
    return slug(f"{run_id}-{hashlib.sha1(str(path).encode()).hexdigest()[:6]}")


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """A README table: one row per model, hardware and language; one column per task's headline score."""
    columns = list(dict.fromkeys((row["task"], row["metric_column"]) for row in sorted(rows, key=lambda row: (row["domain"] != "general", row["domain"]))))
    domains = {row["task"]: row["domain"] for row in rows}
    lines: dict[tuple[str, ...], dict[tuple[str, str], str]] = {}
    words: dict[tuple[str, ...], str] = {}
    for row in rows:
        key = (row["model"], row["size"], row["quantisation"], row["hardware_profile"], row["run_id"], row["language_name"])
        lines.setdefault(key, {})[(row["task"], row["metric_column"])] = row["score_text"]
        if row["usd_per_1000_words"] is not None:
            words.setdefault(key, money(row["usd_per_1000_words"]))

    def cell(text: str) -> str:
        """Markdown renderers pass HTML through: escape it, then the table's own syntax."""
        return html.escape(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    header = [
        "model",
        "size",
        "quantisation",
        "priced as",
        "run",
        "language",
        *(f"{task} [{domains[task]}] ({column})" for task, column in columns),
        "$ / 1,000 words",
    ]
    out = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    for line_key, scores in lines.items():
        out.append(
            "| " + " | ".join([*(cell(part) for part in line_key), *(cell(scores.get(column, "–")) for column in columns), words.get(line_key, "–")]) + " |"
        )
    out.append("")
    out.append(
        "Scores: each task's headline metric with its 95 % bootstrap interval in brackets; 'letter asked': a served model without "
        "prompt log-probabilities answered multiple choice with a letter, a different measurement from scoring the choices. $ / 1,000 words: US$, the language's tokens at the model's input-token price on the hardware it is priced as."
    )
    return "\n".join(out) + "\n"


def write_site(collection: Collection, out: Path, title: str = "accessbench leaderboard") -> Path:
    """Write the whole site to ``out``; return the path of its index page."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "models").mkdir(exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot write the site to {out} ({error.strerror or error}); choose a writable folder with --out DIR") from None
    env = environment()
    common = {**page_context(), "built_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
    rows = _table_rows(collection)
    points = scatter_points(collection)
    scatter = {
        "svg": scatter_svg(points),
        "points": points,
        "caption": "One point per model and run: its mean score over every task and language with a higher-is-better score (0–100), against what its "
        "tokens cost on the hardware it ran on. Green, joined by the dashed line: the Pareto frontier — no other model is both cheaper and better. "
        "Models tested on different tasks are not strictly comparable.",
    }
    models: dict[str, dict[str, Any]] = {}
    for row, cell in zip(rows, collection.cells):
        entry = models.setdefault(
            row["page"],
            {
                "title": row["model"],
                "page": row["page"],
                "ref": row["model_ref"],
                "size": row["size"],
                "quantisation": row["quantisation"],
                "hardware": [],
                "cells": 0,
                "members": [],
            },
        )
        entry["cells"] += 1
        entry["members"].append((row, cell))
        label = f"{row['hardware']} (priced as {row['hardware_profile']})"
        if label not in entry["hardware"]:
            entry["hardware"].append(label)
    languages = sorted({(row["language_group"], display_name(row["language_group"])) for row in rows}, key=lambda pair: pair[1])
    metrics = sorted({row["metric"] for row in rows if row["metric"]}, key=lambda m: list(METRICS).index(m) if m in METRICS else 99)
    index = env.get_template("index.html").render(
        **common,
        title=title,
        root="",
        cells=rows,
        runs=collection.runs,
        duplicates=collection.duplicates,
        conflicts=collection.conflicts,
        tasks=list(dict.fromkeys(row["task"] for row in rows)),
        domains=sorted({row["domain"] for row in rows}),
        languages=languages,
        models=list(models.values()),
        heatmaps=heatmaps(rows),
        scatter=scatter,
        metric_notes=[(metric_label(m), _arrow(m)) for m in metrics],
    )
    (out / "index.html").write_text(index, encoding="utf-8")
    model_template = env.get_template("model.html")
    for page, entry in models.items():
        member_rows = [row for row, _ in entry["members"]]
        html = model_template.render(
            **common,
            title=f"{entry['title']} — accessbench",
            root="../",
            model=entry,
            rows=member_rows,
            samples=_sample_groups(collection, [cell for _, cell in entry["members"]]),
            subgroups=_subgroups([cell for _, cell in entry["members"]]),
            per_cell=SAMPLES_PER_CELL,
        )
        (out / "models" / page).write_text(html, encoding="utf-8")
    runs = [
        {
            "run_id": run.run_id,
            "anchor": _run_anchor(run.run_id, run.path),
            "path": str(run.path),
            "config_hash": run.manifest.get("config_hash"),
            "hardware": run.hardware,
            "profile": f"{run.costs.settings.hardware.name}, {run.costs.settings.country.name}",
            "invocations": run.manifest.get("invocations", []),
            "manifest_json": json.dumps(run.manifest, indent=2, ensure_ascii=False, default=str),
        }
        for run in collection.runs
    ]
    (out / "runs.html").write_text(env.get_template("runs.html").render(**common, title="Runs — accessbench", root="", runs=runs), encoding="utf-8")
    (out / "leaderboard.md").write_text(markdown(rows), encoding="utf-8")
    frame = collection.frame()
    csv_safe(frame).to_csv(out / "leaderboard.csv", index=False)
    frame.to_parquet(out / "leaderboard.parquet", index=False)
    return out / "index.html"


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would run as a formula (starting with = + - @, a tab or a carriage return) get a
    leading single quote, as OWASP recommends against CSV injection; numbers are left as they are."""

    def neutral(value: Any) -> Any:
        return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value

    return frame.map(neutral)


def _arrow(metric: str) -> str:
    return {True: "higher is better", False: "lower is better", None: "descriptive"}[METRICS[metric].higher_is_better]
