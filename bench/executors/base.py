"""The executor protocol: how a run's units of work (one model's cells each) get evaluated.

The runner plans the run, takes the run folder and hands the units to an executor; the executor
decides where each unit is evaluated (this process, other processes, other machines) and returns
the cells' results. Whoever evaluates a unit does it with ``bench.worker.Worker``, which reads
what is pending from the results store, so a unit evaluated twice computes nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bench.worker import CellResult, RunJob, Worker, WorkUnit


class Executor(Protocol):
    """Evaluates units of work; ``here`` is this process's worker (its invocation record and crash watcher)."""

    name: str

    def run(self, units: Sequence[WorkUnit], job: RunJob, here: Worker) -> list[CellResult]: ...
