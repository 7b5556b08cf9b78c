"""The terminal: Rich consoles with markup off, so paths, task names and messages print exactly as they are.

Colour comes only from ``Text`` styles (``labelled``), never from ``[...]`` tags inside strings,
because a user string such as ``[/x]`` or ``^[a-z0-9_]+$`` would be read as markup.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from rich.console import Console
from rich.text import Text

OFF_TERMINAL_WIDTH = 160  # a log or a pipe (CI, `| tee`) has no width; Rich's 80 would wrap every cell of the results table


def _width(stream: TextIO) -> int | None:
    """Rich's own width on a terminal or where COLUMNS is set, else one wide enough for the results table."""
    return None if stream.isatty() or "COLUMNS" in os.environ else OFF_TERMINAL_WIDTH


console = Console(markup=False, width=_width(sys.stdout))
errors = Console(stderr=True, markup=False, width=_width(sys.stderr))


def labelled(label: str, style: str, text: str) -> Text:
    """``label`` in ``style``, then ``text`` verbatim: ``labelled("error:", "bold red", message)``."""
    return Text.assemble((label, style), " ", text)
