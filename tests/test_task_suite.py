"""The low-resource task families on the real subsets in shared/data: prompts, languages, answers and few-shot draws."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FIXTURE_DATA

from bench.errors import UserError
from bench.evaluation import evaluate_docs
from bench.models.base import GenerationParams, LoglikelihoodResult
from bench.tasks import all_tasks, get_task, load_docs

SUITE = [
    "sib200",
    "flores_eng_x",
    "flores_x_eng",
    "afrisenti",
    "afrimmlu",
    "afrixnli",
    "afrimgsm",
    "afriqa",
    "flores_bpb",
    "flores_tax",
    "belebele",
    "global_mmlu",
]


def first(task: str, language: str, data_dir: Path, **options) -> object:
    return load_docs(get_task(task), get_task(task).language(language), data_dir=data_dir, **options)[0]


def test_every_family_is_registered_with_its_hub_source_and_mirror_folder() -> None:
    tasks = all_tasks()
    assert set(SUITE) <= set(tasks)
    hub = {name: tasks[name].source.hf.path for name in SUITE}
    assert hub["sib200"] == "Davlan/sib200" and hub["belebele"] == "facebook/belebele"
    assert hub["flores_eng_x"] == "openlanguagedata/flores_plus" and hub["global_mmlu"] == "CohereForAI/Global-MMLU"
    assert tasks["sib200"].source.hf.splits == {"dev": "validation"}  # the mirror says dev, the Hub validation
    assert {tasks[name].kind for name in ("sib200", "afrisenti", "afrimmlu", "afrixnli", "belebele", "global_mmlu")} == {"multiple_choice"}
    assert tasks["flores_eng_x"].metrics == ["chrf_pp", "bleu"] and tasks["afriqa"].metrics == ["f1", "exact_match"]
    assert all(tasks[name].fewshot == 0 for name in SUITE)  # zero-shot by default


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("swh", {"afrisenti": "swa", "sib200": "swh_Latn", "global_mmlu": "sw", "afriqa": "swa"}),
        ("Hausa", {"afrisenti": "hau", "sib200": "hau_Latn", "global_mmlu": "ha", "belebele": "hau_Latn"}),
        ("amh_Ethi", {"afrimmlu": "amh", "flores_x_eng": "amh_Ethi", "global_mmlu": "am"}),
    ],
)
def test_one_language_name_maps_to_each_tasks_own_code(requested: str, expected: dict[str, str]) -> None:
    assert {task: get_task(task).language(requested) for task in expected} == expected


def test_a_language_a_task_lacks_lists_the_ones_it_has() -> None:
    with pytest.raises(UserError, match=r"task afriqa has no Amharic \('amh'\); it has: bem, fon, hau"):
        get_task("afriqa").language("amh")
    with pytest.raises(UserError, match="translates from or into eng_Latn itself"):
        get_task("flores_eng_x").language("eng")


# ---------------------------------------------------------------- golden prompts
def test_golden_sib200_prompt(shared_data: Path) -> None:
    doc = first("sib200", "hau", shared_data)
    assert doc.id == "1523" and doc.target == "science/technology" and doc.gold == 0 and len(doc.choices) == 7
    assert doc.prompt == (
        "Topics: science/technology, travel, politics, sports, health, entertainment, geography.\n"
        "Text: Maye gurbi yana ƙara sabon bambancin kwayoyin, kuma zaɓi ya cire shi daga tafkin bambancin da aka bayyana.\nTopic:"
    )


def test_golden_translation_prompts_pair_the_same_flores_id(shared_data: Path) -> None:
    into = first("flores_eng_x", "yor", shared_data)
    back = first("flores_x_eng", "yor", shared_data)
    assert into.id == back.id
    assert into.prompt.startswith("Translate the following sentence from English into Yoruba.\nEnglish: On Monday, Sara Danius,")
    assert into.prompt.endswith("\nYoruba:") and into.target.startswith("Ní ọjọ́ Ajé, Sara Danius,")
    assert back.prompt.startswith("Translate the following sentence from Yoruba into English.\nYoruba: Ní ọjọ́ Ajé,")
    assert back.prompt.endswith("\nEnglish:") and back.target.startswith("On Monday, Sara Danius,")


def test_golden_afrimmlu_prompt_parses_the_choices_text(shared_data: Path) -> None:
    doc = first("afrimmlu", "Hausa", shared_data)
    assert doc.prompt == (
        "The following is a multiple choice question about elementary_mathematics.\n\nMenene matsayin p a cikin 24 = 2p?\n"
        "A. p = 4\nB. p = 8\nC. p = 12\nD. p = 24\nAnswer:"
    )
    assert doc.choices == ("p = 4", "p = 8", "p = 12", "p = 24") and doc.gold == 2 and doc.target == "p = 12"


def test_golden_afrisenti_afrixnli_afrimgsm_afriqa_prompts(shared_data: Path) -> None:
    senti = first("afrisenti", "hau", shared_data)
    assert (
        senti.prompt
        == "Tweet: allah ya sare na gabaya ku ma yaye mana wan nan cuta baki daya dake fadin duniya amin\nIs the sentiment of this tweet positive, neutral or negative?\nAnswer:"
    )
    assert (senti.id, senti.target, senti.choices) == ("1", "positive", ("positive", "neutral", "negative"))
    nli = first("afrixnli", "hau", shared_data)
    assert nli.prompt.startswith("Premise: Gaskiya bana ba tunanin sa amma na fusata sosai,") and "\nHypothesis: Ban ƙara masa magana ba.\n" in nli.prompt
    assert nli.gold == 2
    maths = first("afrimgsm", "hau", shared_data)
    assert maths.prompt.startswith(
        "Solve the following math problem step by step. Put your final numeric answer in \\boxed{}, for example: \\boxed{42}.\n\nDoguwar riga"
    )
    assert maths.target == "3"
    qa = first("afriqa", "hau", shared_data)
    assert qa.prompt.startswith(
        "Answer the question with the shortest span of the context that contains the answer.\nContext: Anambra State  is a Nigerian state"
    )
    assert qa.prompt.endswith("\nQuestion: Awane yanki jahar Anambra take a Nijeriya?\nAnswer:") and qa.target == "southeastern"


def test_golden_belebele_and_global_mmlu_prompts_on_fixtures() -> None:
    reading = first("belebele", "English", FIXTURE_DATA)
    assert reading.prompt == (
        "The village dug a new well in March. Before that, families walked two hours each day to fetch water from the river.\n"
        "Question: How long did families walk for water before the well was dug?\n"
        "A. Thirty minutes\nB. One hour\nC. Two hours\nD. All day\nAnswer:"
    )
    assert reading.gold == 2 and reading.target == "Two hours"  # correct_answer_num is 1-based
    knowledge = first("global_mmlu", "eng", FIXTURE_DATA)
    assert knowledge.id == "elementary_mathematics/test/0" and knowledge.gold == 2 and knowledge.target == "12"
    assert knowledge.prompt.endswith("What is 7 + 5?\nA. 10\nB. 11\nC. 12\nD. 13\nAnswer:")


def test_rows_without_a_passage_or_an_answer_are_left_out(shared_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "afriqa_gold_passages"
    folder.mkdir()
    row = {"id": "1", "question_lang": "Q?", "context": "C.", "answer_pivot": {"answer_start": [0], "text": ["C"]}}
    rows = [row, {**row, "id": "2", "context": None}, {**row, "id": "3", "answer_pivot": {"answer_start": [], "text": []}}]
    (folder / "hau.test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert [doc.id for doc in load_docs(get_task("afriqa"), "hau", data_dir=tmp_path)] == ["1"]
    pool = load_docs(get_task("afriqa"), "kin", data_dir=shared_data)
    rows = [json.loads(line) for line in (shared_data / "afriqa_gold_passages" / "kin.test.jsonl").read_text(encoding="utf-8").splitlines()]
    usable = [row for row in rows if row["context"] is not None and row["answer_pivot"]["text"] and row["answer_pivot"]["text"][0].strip()]
    assert len(pool) == len(usable) < len(rows)
    assert all("None" not in doc.prompt for doc in pool)


# ---------------------------------------------------------------- few-shot
def test_few_shot_examples_come_from_the_few_shot_split_never_from_test(shared_data: Path) -> None:
    task = get_task("afrisenti")
    test_tweets = {json.loads(line)["tweet"] for line in (shared_data / "afrisenti" / "hau.test.jsonl").read_text(encoding="utf-8").splitlines()}
    train_tweets = {json.loads(line)["tweet"] for line in (shared_data / "afrisenti" / "hau.train.jsonl").read_text(encoding="utf-8").splitlines()}
    docs = load_docs(task, "hau", 5, data_dir=shared_data, fewshot=3, seed=7)
    for doc in docs:
        *shots, own = doc.prompt.split("\n\n")
        assert len(shots) == 3 and own == load_docs(task, "hau", 5, data_dir=shared_data, seed=7)[docs.index(doc)].prompt
        for shot in shots:
            tweet = shot.split("\n")[0].removeprefix("Tweet: ")
            assert tweet in train_tweets and tweet not in test_tweets
            assert shot.rsplit(" ", 1)[-1] in ("positive", "neutral", "negative")  # the solved answer follows
    assert load_docs(task, "hau", 5, data_dir=shared_data, fewshot=3, seed=7) == docs  # seeded
    assert [d.prompt for d in load_docs(task, "hau", 5, data_dir=shared_data, fewshot=3, seed=8)] != [d.prompt for d in docs]


def test_a_task_without_a_few_shot_split_refuses_k_shot() -> None:
    with pytest.raises(UserError, match="belebele has no few-shot split"):
        load_docs(get_task("belebele"), "eng_Latn", data_dir=FIXTURE_DATA, fewshot=2)


def test_the_few_shot_split_may_not_be_the_test_split() -> None:
    from pydantic import ValidationError

    from bench.data import SourceSpec

    with pytest.raises(ValidationError, match="few-shot examples must come from another split"):
        SourceSpec(local="x", split="test", fewshot_split="test")


# ---------------------------------------------------------------- scoring multiple choice
class ScriptedBackend:
    """Returns given log-probabilities in order and counts calls (no model)."""

    def __init__(self, logprobs: list[float]) -> None:
        self.logprobs, self.calls = list(logprobs), []

    def loglikelihood(self, requests):
        self.calls.append(list(requests))
        return [LoglikelihoodResult(self.logprobs.pop(0), False, 10, 2) for _ in requests]


def test_multiple_choice_sends_every_choice_in_one_call_and_normalises_by_bytes(shared_data: Path) -> None:
    task = get_task("afrisenti")
    docs = load_docs(task, "amh", 2, data_dir=shared_data)
    # doc 1: raw argmax "neutral" (-6.0); per byte (9, 8, 9 bytes with the space) "negative" (-6.2 / 9). doc 2: "positive" both ways.
    backend = ScriptedBackend([-9.0, -6.0, -6.2, -1.0, -5.0, -6.0])
    records = evaluate_docs(task, docs, backend, GenerationParams())
    assert len(backend.calls) == 1 and len(backend.calls[0]) == 6
    assert backend.calls[0][0].context == docs[0].prompt and backend.calls[0][0].continuation == " positive"
    first_values, second_values = records[0]["values"], records[1]["values"]
    assert records[0]["output"] == "neutral" and first_values["predicted_norm_bytes"] == 2
    assert first_values["choice_logprobs"] == [-9.0, -6.0, -6.2] and records[0]["choices"] == ["positive", "neutral", "negative"]
    assert first_values["acc"] == float(docs[0].gold == 1) and first_values["acc_norm_bytes"] == float(docs[0].gold == 2)
    assert second_values["predicted"] == 0 and records[0]["input_tokens"] == 30
