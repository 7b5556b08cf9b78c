"""Executors by name, imported on first use. An executor is one file; registering it is one
``register_executor`` line here, or an ``accessbench.executors`` entry point in another package."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from importlib.metadata import entry_points

from bench.errors import UserError, did_you_mean, missing_dependency
from bench.executors.base import Executor


@dataclass(frozen=True)
class ExecutorEntry:
    """One executor: where its class lives and what it needs."""

    name: str
    module: str  # imported on first use
    cls: str
    requires: tuple[str, ...] = ()  # importable modules of its optional dependencies
    extra: str | None = None  # the extra that installs them (`python install.py EXTRA`)
    description: str = ""


_EXECUTORS: dict[str, ExecutorEntry] = {}


def register_executor(entry: ExecutorEntry) -> ExecutorEntry:
    """Make an executor available as ``accessbench run --executor <name>`` (a later registration replaces an earlier one)."""
    _EXECUTORS[entry.name] = entry
    return entry


register_executor(ExecutorEntry("inline", "bench.executors.inline", "InlineExecutor", description="every unit in this process, one model at a time"))
register_executor(
    ExecutorEntry("ray", "bench.executors.ray", "RayExecutor", requires=("ray",), extra="ray", description="each model's cells as a task on a Ray cluster")
)


def executors() -> dict[str, ExecutorEntry]:
    """Every registered executor, by name (entry points of other installed packages included)."""
    for point in entry_points(group="accessbench.executors"):
        entry = point.load()
        if isinstance(entry, ExecutorEntry) and entry.name not in _EXECUTORS:
            register_executor(entry)
    return dict(_EXECUTORS)


def get_executor(name: str, **options: object) -> Executor:
    """An instance of the executor called ``name``; a UserError naming the known ones, or the extra to install."""
    known = executors()
    if name not in known:
        raise UserError(f"unknown executor '{name}'{did_you_mean(name, known)}; choose one of: {', '.join(known)}")
    entry = known[name]
    missing = [module for module in entry.requires if importlib.util.find_spec(module) is None]
    if missing:
        raise missing_dependency(f"executor {name}", missing, entry.extra)
    executor: Executor = getattr(importlib.import_module(entry.module), entry.cls)(**options)
    return executor
