"""Where accessbench keeps its files outside a results folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent


def cache_dir() -> Path:
    """Cache for converted GGUF checkpoints and assembled weights (``ACCESSBENCH_CACHE`` overrides)."""
    configured = os.environ.get("ACCESSBENCH_CACHE")
    base = Path(configured) if configured else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "accessbench"
    return base.expanduser()


def builtin_dir(name: str) -> Path:
    """The project's `tasks/` or `configs/` folder: the checkout's own, or the copy inside an installed wheel."""
    checkout = PACKAGE_ROOT.parent / name
    return checkout if checkout.is_dir() else PACKAGE_ROOT / "_builtin" / name


DATA_ENV = "ACCESSBENCH_DATA"
STARTER = "@starter"  # a data_dir naming the starter pack itself (the quickstart reads only it)


def starter_dir() -> Path:
    """The starter data pack shipped inside accessbench, in the mirror's layout (``tools/build_starter_pack.py``)."""
    return PACKAGE_ROOT / "starter"


def mirror_dir(configured: Path | None = None) -> Path | None:
    """The local data mirror (`<dataset>/<lang>.<split>.jsonl`): --data-dir / data_dir (``@starter``: the starter pack), else ``ACCESSBENCH_DATA``."""
    if configured is not None:
        return starter_dir() if str(configured) == STARTER else Path(configured).expanduser()
    from_env = os.environ.get(DATA_ENV)
    return Path(from_env).expanduser() if from_env else None


# ---------------------------------------------------------------- names that become folders
UNSAFE_CHARACTERS = '/ \\ : * ? " < > |'
_UNSAFE = re.compile(r'[/\\:*?"<>|\x00-\x1f\x7f]+')


def is_safe_component(name: str) -> bool:
    """Whether ``name`` is one portable path component: no separator, no character Windows forbids, no control
    character, not ``.`` or ``..``, no leading or trailing space, at most 255 bytes."""
    return 0 < len(name.encode("utf-8")) <= 255 and name not in (".", "..") and name == name.strip() and not _UNSAFE.search(name)


def safe_component(text: str) -> str:
    """``text`` made into a safe component (runs of unsafe characters become ``-``)."""
    name = _UNSAFE.sub("-", text).strip()[:100].strip()
    return name if is_safe_component(name) else "run"
