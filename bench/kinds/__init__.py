"""Task kinds, by name: each is one object in one module of this package (see ``bench.kinds.base``)."""

from __future__ import annotations

from bench.errors import UserError, did_you_mean
from bench.kinds.base import Scored, TaskKind
from bench.kinds.generate import GENERATE
from bench.kinds.multiple_choice import MULTIPLE_CHOICE
from bench.kinds.rolling_loglikelihood import ROLLING_LOGLIKELIHOOD
from bench.kinds.tokenizer_stats import TOKENIZER_STATS

KINDS: dict[str, TaskKind] = {kind.name: kind for kind in (GENERATE, MULTIPLE_CHOICE, ROLLING_LOGLIKELIHOOD, TOKENIZER_STATS)}


def task_kind(name: str) -> TaskKind:
    """The kind called ``name``; an unknown one is a one-line error."""
    if name not in KINDS:
        raise UserError(f"unknown task kind '{name}'{did_you_mean(name, KINDS)}; known: {', '.join(KINDS)}")
    return KINDS[name]


__all__ = ["KINDS", "Scored", "TaskKind", "task_kind"]
