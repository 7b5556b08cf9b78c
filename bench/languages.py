"""Matching what a user types for a language (hau, hau_Latn, Hausa, swa, Swahili) to a task's own codes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import langcodes

from bench.errors import UserError, short_list

# Individual languages that datasets use where CLDR prefers the macrolanguage code.
_MACROLANGUAGE = {
    "swh": "sw",
    "npi": "ne",
    "zsm": "ms",
    "zlm": "ms",
    "pes": "fa",
    "uzn": "uz",
    "gaz": "om",
    "khk": "mn",
    "ekk": "et",
    "lvs": "lv",
    "azj": "az",
    "plt": "mg",
    "arb": "ar",
    "cmn": "zh",
    "als": "sq",
    "ory": "or",
    "pbt": "ps",
    "pbu": "ps",
    "ydd": "yi",
    "quy": "qu",
    "fuv": "ff",
    "kmr": "ku",
    "nob": "no",
}


@lru_cache(maxsize=4096)
def language_key(code: str) -> tuple[str, str | None]:
    """(language, script) for a code such as 'hau', 'hau_Latn', 'ha', 'swa', or a name such as 'Hausa'.

    Raises LookupError when the text is not a language langcodes knows.
    """
    text = code.strip()
    base, _, script = text.replace("-", "_").partition("_")
    if base.isalpha() and base.islower() and 2 <= len(base) <= 3:
        base = _MACROLANGUAGE.get(base, base)
        tag = langcodes.Language.get(base)
        if not tag.is_valid() or tag.display_name().startswith("Unknown language"):
            raise LookupError(code)
        language = tag.language
    else:
        language = langcodes.find(text).language
        script = ""
    language = _MACROLANGUAGE.get(language or "", language)
    return str(language), (script.capitalize() or None) if script and script.isalpha() and len(script) == 4 else None


_CODE = re.compile(r"[A-Za-z]{2,3}(?:[_-][A-Za-z]{4})?")  # hau, ha, hau_Latn
_NAME = re.compile(r"[^\W\d_]+(?:[ '’(),-]+[^\W\d_]+)*\)?")  # Hausa, Swahili (macrolanguage), N'Ko


def language_code(text: str) -> str:
    """The code a language a user wrote is filed under (results folders are named by it): the text itself when it
    is a code (hau, hau_Latn), else the ISO 639-3 code of the language it names (Hausa → hau).

    Raises LookupError for anything else, a path such as ``Hausa/../x`` included.
    """
    text = text.strip()
    if _CODE.fullmatch(text):
        language_key(text)  # a code langcodes knows
        return text
    if not _NAME.fullmatch(text):
        raise LookupError(text)
    language, _ = language_key(text)
    return str(langcodes.Language.get(language).to_alpha3())


def display_name(code: str) -> str:
    """English name of a code, e.g. 'hau_Latn' → 'Hausa'; the code itself when unknown."""
    try:
        language, _ = language_key(code)
        return langcodes.Language.get(language).display_name()
    except (LookupError, ValueError):
        return code


def match_language(requested: str, available: Sequence[str], task: str) -> str:
    """Return the task's own code for ``requested``, or raise a UserError listing the task's languages."""
    lowered = {code.lower(): code for code in available}
    if requested.lower() in lowered:
        return lowered[requested.lower()]
    try:
        wanted, wanted_script = language_key(requested)
    except (LookupError, ValueError):
        raise UserError(
            f"'{requested}' is not a language code or name accessbench knows; use an ISO 639-3 code (hau), "
            f"a FLORES code (hau_Latn) or an English name (Hausa). Task {task} has: {short_list(available, 40)}"
        ) from None
    matches = []
    for code in available:
        try:
            language, script = language_key(code)
        except (LookupError, ValueError):
            continue
        if language == wanted and (wanted_script is None or script in (None, wanted_script)):
            matches.append(code)
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UserError(f"'{requested}' matches several languages of task {task}: {', '.join(matches)}; name one of them")
    raise UserError(f"task {task} has no {display_name(requested)} ('{requested}'); it has: {short_list(available, 40)}")
