"""The inline executor: every unit in this process, one model loaded at a time (the default)."""

from __future__ import annotations

from collections.abc import Sequence

from bench.worker import CellResult, RunJob, Worker, WorkUnit


class InlineExecutor:
    name = "inline"

    def run(self, units: Sequence[WorkUnit], job: RunJob, here: Worker) -> list[CellResult]:
        return [result for unit in units for result in here.evaluate(unit)]
