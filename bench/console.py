"""The terminal: Rich consoles with markup off, so paths, task names and messages print exactly as they are.

Colour comes only from ``Text`` styles (``labelled``), never from ``[...]`` tags inside strings,
because a user string such as ``[/x]`` or ``^[a-z0-9_]+$`` would be read as markup.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

console = Console(markup=False)
errors = Console(stderr=True, markup=False)


def labelled(label: str, style: str, text: str) -> Text:
    """``label`` in ``style``, then ``text`` verbatim: ``labelled("error:", "bold red", message)``."""
    return Text.assemble((label, style), " ", text)
