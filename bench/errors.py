"""User-facing errors: each becomes one line on the terminal, never a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A problem with the user's input (config, task, language, model, folder).

    The message is a single line that names the offending thing and how to fix it.
    """


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest option, or '' when nothing is close."""
    matches = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


def short_list(items: Iterable[str], limit: int = 20) -> str:
    """Join items with commas, eliding the tail of long lists."""
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, … ({len(items)} in all)"


def missing_dependency(what: str, missing: list[str], extra: str | None) -> UserError:
    """'backend llamacpp needs llama_cpp, which is not installed; install it with …' for a plugin whose extra is missing."""
    how = f"install it with `python install.py {extra}` in the accessbench checkout" if extra else "install it"
    return UserError(f"{what} needs {', '.join(missing)}, which is not installed; {how}, or use another one")
