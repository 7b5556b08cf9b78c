"""Language codes: ISO 639-3, FLORES codes, macrolanguages and English names."""

from __future__ import annotations

import pytest

from bench.errors import UserError
from bench.languages import display_name, match_language

MGSM = ["amh", "eng", "hau", "swh", "yor", "npi"]
FLORES = ["eng_Latn", "hau_Latn", "swh_Latn", "amh_Ethi"]


@pytest.mark.parametrize(
    ("requested", "available", "expected"),
    [
        ("hau", MGSM, "hau"),
        ("hau_Latn", MGSM, "hau"),
        ("Hausa", MGSM, "hau"),
        ("swa", MGSM, "swh"),
        ("Swahili", MGSM, "swh"),
        ("Nepali", MGSM, "npi"),
        ("amh", FLORES, "amh_Ethi"),
        ("Yoruba", ["yor"], "yor"),
        ("SWH_latn", FLORES, "swh_Latn"),
    ],
)
def test_matches(requested: str, available: list[str], expected: str) -> None:
    assert match_language(requested, available, "task") == expected


def test_language_the_task_lacks_lists_what_it_has() -> None:
    with pytest.raises(UserError, match=r"task t has no Zulu \('zul'\); it has: amh, eng, hau"):
        match_language("zul", MGSM, "t")


def test_nonsense_is_refused_with_the_accepted_forms() -> None:
    with pytest.raises(UserError, match="ISO 639-3"):
        match_language("blorpish", MGSM, "t")


def test_display_name() -> None:
    assert display_name("amh_Ethi") == "Amharic"
    assert display_name("qqq-not") == "qqq-not"
