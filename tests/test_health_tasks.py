"""The health-domain families: TICO-19 translation and AfriMed-QA clinical multiple choice, on the mirror and in the Hub's shape."""

from __future__ import annotations

import json
import re
from pathlib import Path

import datasets
import pytest

from bench import data
from bench.config import ModelConfig
from bench.data import DataMissing, load_rows, locate, pull
from bench.evaluation import evaluate_docs, summarize
from bench.models.base import GenerationParams
from bench.models.hf import HFBackend
from bench.tasks import get_task, load_docs


def authors_example(shared_data: Path) -> str:
    """The prompt of test line 0 exactly as shared/data/afrimed_qa/SOURCE.md quotes it from the authors' result files."""
    source = (shared_data / "afrimed_qa" / "SOURCE.md").read_text(encoding="utf-8")
    return re.search(r"Example \(test line 0, prompt B\):\n```text\n(.*?)\n```", source, re.S).group(1)


# ---------------------------------------------------------------- AfriMed-QA
def test_afrimed_prompt_is_the_authors_byte_for_byte(shared_data: Path) -> None:
    docs = load_docs(get_task("afrimed_qa"), "eng", data_dir=shared_data)
    assert len(docs) == 289  # the whole published item set, defective items kept
    assert docs[0].prompt == authors_example(shared_data)
    assert docs[0].choices == ("A", "B", "C", "D", "E") and docs[0].target == "D" and docs[0].gold == 3
    assert [doc.defect for doc in docs].count(None) == 288  # only the item without options is unanswerable
    true_false = next(doc for doc in docs if len(doc.choices) == 2)
    assert "A.  True\nB.  False\n\n###Answer:" in true_false.prompt and dict(true_false.groups) == {"options": "2"}


def test_afrimed_defective_items_are_scored_without_crashing(shared_data: Path, tiny_model_dir: Path) -> None:
    task = get_task("afrimed_qa")
    docs = load_docs(task, "eng", data_dir=shared_data)
    defective = {"66e85e06", "7f437c7d", "a302f032"}  # no options; A-D identical; D and E identical
    chosen = [doc for doc in docs if doc.id[:8] in defective] + docs[:3]
    backend = HFBackend(ModelConfig(ref=str(tiny_model_dir), device="cpu", dtype="float32"), batch_size=4)
    records = evaluate_docs(task, chosen, backend, GenerationParams(max_new_tokens=1))
    by_id = {record["doc_id"][:8]: record for record in records}
    assert by_id["66e85e06"]["values"] == {"acc": 0.0, "acc_norm_bytes": 0.0, "gold": None, "predicted": None, "defect": "no answer options"}
    assert by_id["7f437c7d"]["values"]["predicted"] in range(5) and len(by_id["7f437c7d"]["values"]["choice_logprobs"]) == 5
    summary = summarize(task, records, seed=1)
    assert summary["n_samples"] == 6 and summary["domain"] == "health"
    assert summary["defective_items"] == [next(doc.id for doc in docs if doc.id.startswith("66e85e06"))]
    correct = sum(record["values"]["acc"] for record in records)
    assert summary["metrics"]["acc"]["value"] == pytest.approx(correct / 6)
    assert summary["metrics_without_defective"]["acc"]["value"] == pytest.approx(correct / 5)
    options = summary["subgroups"]["options"]
    assert sum(group["n"] for group in options.values()) == 6 and options["0"]["metrics"]["acc"]["value"] == 0.0


HUB_ROWS = [
    {
        "sample_id": "s1",
        "question_type": "mcq",
        "question": "Which vector transmits malaria?",
        "answer_options": json.dumps({"option1": "Anopheles mosquito", "option2": "Tsetse fly", "option3": "N/A", "option4": "Sandfly"}),
        "correct_answer": "option1",
        "answer_rationale": "Female Anopheles mosquitoes transmit Plasmodium.",
        "specialty": "Infectious Disease",
        "country": "NG",
        "tier": "expert",
        "requires_african_expertise": 1.0,
    },
    {
        "sample_id": "s2",
        "question_type": "mcq",
        "question": "First-line drug for uncomplicated falciparum malaria in Kenya?",
        "answer_options": json.dumps({"option1": "Chloroquine", "option2": "Artemether-lumefantrine", "option3": "Quinine"}),
        "correct_answer": "option2,option3",
        "answer_rationale": "n/a",
        "specialty": "Infectious Disease",
        "country": "KE",
        "tier": "crowdsourced",
        "requires_african_expertise": 1.0,
    },
    {
        "sample_id": "s3",
        "question_type": "mcq",
        "question": "Normal adult resting heart rate?",
        "answer_options": json.dumps({"option1": "60-100", "option2": "100-140"}),
        "correct_answer": "option1",
        "answer_rationale": "Textbook range.",
        "specialty": "Cardiology",
        "country": "KE",
        "tier": "expert",
        "requires_african_expertise": 0.0,
    },
    {"sample_id": "s4", "question_type": "saq", "question": "Explain.", "answer_options": None, "correct_answer": None, "requires_african_expertise": 1.0},
]


@pytest.fixture
def afrimed_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    def load_dataset(path, config=None, split=None, revision=None):
        assert (path, config, split) == ("intronhealth/afrimedqa_v2", "default", "train")
        return datasets.Dataset.from_list(HUB_ROWS)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.delenv("HF_HUB_OFFLINE")


def test_afrimed_hub_rows_are_filtered_and_converted_to_the_mirror_shape(afrimed_hub: None, tmp_path: Path) -> None:
    task = get_task("afrimed_qa")
    test = load_rows(task.source, "eng", "test", None, "afrimed_qa")
    assert [row["sample_id"] for row in test] == ["s1", "s2"]  # MCQs needing African expertise only
    assert test[0]["options"] == ["Anopheles mosquito", "Tsetse fly", "Sandfly"] and test[0]["answer"] == "A"
    assert test[1]["answer"] == "B" and test[1]["rationale"] == "no rationale"  # first correct option; short rationale
    assert [row["sample_id"] for row in load_rows(task.source, "eng", "dev", None, "afrimed_qa")] == ["s3"]  # disjoint few-shot pool
    docs = load_docs(task, "eng", data_dir=tmp_path, fewshot=1)
    assert dict(docs[0].groups) == {"specialty": "Infectious Disease", "country": "NG", "options": "3"}
    assert docs[0].prompt.startswith("###Instruction:") and "###Question: Normal adult resting heart rate?" in docs[0].prompt
    assert docs[0].prompt.count("###Instruction:") == 2 and "\n###Answer: A\n\n###Instruction" in docs[0].prompt
    path = pull(task.source, "eng", "test", tmp_path)
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[1])["country"] == "KE"


def test_subgroup_scores_break_down_by_specialty_and_country(afrimed_hub: None, tmp_path: Path) -> None:
    task = get_task("afrimed_qa")
    docs = load_docs(task, "eng", data_dir=tmp_path)
    records = [
        {"doc_id": doc.id, "values": {"acc": float(i == 0)}, "groups": dict(doc.groups), "input_tokens": 1, "output_tokens": 0} for i, doc in enumerate(docs)
    ]
    summary = summarize(task, records, seed=1)
    assert summary["subgroups"]["country"]["NG"] == {"n": 1, "metrics": {"acc": {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 1}}}
    assert summary["subgroups"]["country"]["KE"]["metrics"]["acc"]["value"] == 0.0
    assert summary["subgroups"]["specialty"]["Infectious Disease"]["n"] == 2 and set(summary["subgroups"]) == {"specialty", "country", "options"}


# ---------------------------------------------------------------- TICO-19
def test_tico19_lists_every_hub_language_and_reads_the_mirror(shared_data: Path) -> None:
    task = get_task("tico19_eng_x")
    assert task.domain == "health" and task.metrics == ["chrf_pp", "bleu"] and len(task.languages) == 38
    assert set(task.source.hf.languages) == set(task.languages)
    into = load_docs(task, task.language("Hausa"), data_dir=shared_data)
    back = load_docs(get_task("tico19_x_eng"), "hau", data_dir=shared_data)
    assert len(into) == 200 and into[0].id == back[0].id == "CMU_1:14"
    assert into[0].prompt == "Translate the following sentence from English into Hausa.\nEnglish: and i have a cough too\nHausa:"
    assert into[0].target == back[0].prompt.split("Hausa: ")[1].split("\n")[0] == "kuma ina da tari ma"
    assert back[0].target == "and i have a cough too"
    assert len(load_docs(task, task.language("swa"), data_dir=shared_data)) == 200  # swa → swh


def test_tico19_few_shot_examples_come_from_dev_only(shared_data: Path) -> None:
    task = get_task("tico19_eng_x")
    test_ids = {doc.id for doc in load_docs(task, "zul", data_dir=shared_data)}
    dev = {doc.target for doc in load_docs(task.model_copy(update={"source": task.source.model_copy(update={"split": "dev"})}), "zul", data_dir=shared_data)}
    shot = load_docs(task, "zul", limit=3, data_dir=shared_data, fewshot=2)[0]
    examples = shot.prompt.split("\n\n")[:2]
    assert len(examples) == 2 and all(example.rsplit("Zulu: ", 1)[1] in dev for example in examples)
    assert shot.id in test_ids


def test_tico19_hub_tsv_is_read_directly_with_its_quoting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "gmnlp" / "tico19@main" / "test"
    folder.mkdir(parents=True)
    (folder / "test.en-ha.tsv").write_text(
        "sourceLang\ttargetLang\tsourceString\ttargetString\tstringID\turl\tlicense\ttranslator_id\n"
        'en\tha\t"Sales went up in a ""sharp increase"" last week."\tNA\tw_1:1\thttp://x\tpublic\tt1\n'
        "en\tha\tand i have a cough too\tkuma ina da tari ma\tCMU_1:14\thttp://y\tpublic\tt1\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(data, "HUB_FILES", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    rows = load_rows(get_task("tico19_eng_x").source, "hau", "test", None, "tico19_eng_x")
    assert rows[0]["sourceString"] == 'Sales went up in a "sharp increase" last week.' and rows[0]["targetString"] == "NA"
    assert rows[1]["stringID"] == "CMU_1:14"


def test_tico19_somali_never_comes_from_the_misaligned_hub_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    source = get_task("tico19_eng_x").source
    assert locate(source, "som", "test", tmp_path, "tico19_eng_x").kind == "starter"  # the realigned copy in the starter pack
    monkeypatch.setattr(data, "starter_dir", lambda: tmp_path / "no-pack")
    where = locate(source, "som", "test", tmp_path, "tico19_eng_x")
    assert where.kind == "missing" and "drift" in where.where
    with pytest.raises(DataMissing, match="the Hub copy is not used: TICO-19's Somali lines drift"):
        load_docs(get_task("tico19_eng_x"), "som", data_dir=tmp_path)


def test_a_users_task_file_may_declare_its_domain(tmp_path: Path) -> None:
    from bench.tasks import task_from_file

    (tmp_path / "messages.csv").write_text("prompt,reference\nFassara: wash your hands,wanke hannuwanka\n", encoding="utf-8")
    (tmp_path / "messages.yaml").write_text("file: messages.csv\nlanguage: hau\ndomain: health\n", encoding="utf-8")
    assert task_from_file(tmp_path / "messages.yaml").domain == "health"
    assert task_from_file(tmp_path / "messages.csv").domain == "general"
