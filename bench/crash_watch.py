"""A watcher process that reports a run which died abruptly: a native crash, ``kill -9``, the OOM killer.

A segfault in llama.cpp or torch ends the Python process at once: no ``except`` runs, so the
run itself cannot say what happened. The runner starts this watcher beside it and tells it, over
a pipe, which cell it is evaluating; ``faulthandler`` writes into the same pipe if a fatal signal
arrives. When the pipe closes without a ``done`` line, the watcher marks the process's invocation
record as crashed, keeps faulthandler's dump as ``crash-<pid>.log`` in the run folder, and
prints one line naming the cell, the saved samples and what to do. Samples are appended and
fsynced per chunk, so every finished one is already on disk.

``python -m bench.crash_watch RUN_DIR PID`` is the watcher's side.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO


class CrashWatch:
    """The runner's side: start the watcher, say which cell runs, say ``done`` on any orderly end."""

    def __init__(self, run_dir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.crash_watch", str(run_dir), str(os.getpid())],
            stdin=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C for the run is not one for the watcher
        )
        assert self.process.stdin is not None
        self.pipe: IO[bytes] = self.process.stdin
        faulthandler.enable(file=self.pipe, all_threads=False)

    def cell(self, label: str, backend: str) -> None:
        self._say("cell " + json.dumps({"label": label, "backend": backend}))

    def done(self) -> None:
        """An orderly end (finished, interrupted or failed with a Python exception)."""
        faulthandler.disable()
        self._say("done")
        self.pipe.close()
        self.process.wait()

    def _say(self, line: str) -> None:
        try:
            self.pipe.write((line + "\n").encode())
            self.pipe.flush()
        except OSError:
            pass  # a watcher that died must not stop the run


def _report(run_dir: Path, pid: int, cell: dict[str, str] | None, dump: str) -> str:
    """Mark the invocation record crashed, keep the dump, and return the one-line message."""
    from bench.results import DamagedResults, count_saved_samples, mark_stale_invocations

    fatal = next((line.split(":", 1)[1].strip() for line in dump.splitlines() if line.startswith("Fatal Python error:")), None)
    what = f"crashed ({fatal})" if fatal else "was killed (kill -9, or the system ran out of memory)"
    where = f" while evaluating {cell['label']}" if cell else ""
    log = ""
    if dump.strip():
        crash_log = run_dir / f"crash-{pid}.log"
        crash_log.write_text(dump, encoding="utf-8")
        log = f"; details in {crash_log}"
    with contextlib.suppress(DamagedResults, OSError):  # the samples matter; the record is a courtesy
        mark_stale_invocations(run_dir, f"crashed: {fatal or 'killed'}" + (f" in {cell['label']}" if cell else ""), pid=pid)
    hint = "rerun the same command to resume"
    if cell and cell["backend"] == "llamacpp":
        hint += "; if llama.cpp crashes again, use backend: hf for this model or rebuild it with `python install.py llamacpp`"
    return f"error: the run {what}{where}; {count_saved_samples(run_dir)} finished samples are saved in {run_dir}{log}; {hint}"


def watch(run_dir: Path, pid: int, source: IO[bytes]) -> None:
    cell: dict[str, str] | None = None
    dump: list[str] = []
    for raw in source:
        line = raw.decode("utf-8", errors="replace")
        if line.startswith("cell "):
            cell = json.loads(line[5:])
        elif line.strip() == "done":
            return
        else:
            dump.append(line)
    print(_report(run_dir, pid, cell, "".join(dump)), file=sys.stderr, flush=True)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch(Path(sys.argv[1]), int(sys.argv[2]), sys.stdin.buffer)
