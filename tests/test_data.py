"""Data sources: the local mirror, Hub rows (through a stand-in for datasets.load_dataset), `data pull`, and users' files."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from bench.data import DataMissing, HubSpec, SourceSpec, UserFile, load_rows, locate, pull, read_user_rows
from bench.errors import UserError
from bench.tasks import get_task, load_docs

XNLI_SOURCE = SourceSpec(
    hf=HubSpec(path="masakhane/afrixnli", splits={"dev": "validation"}, labels={"label": ["entailment", "neutral", "contradiction"]}),
    local="afrixnli",
    fewshot_split="dev",
)


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """datasets.load_dataset answering from memory, as the Hub would (class indices, Hub column names)."""
    calls = []

    def load_dataset(path, config, split, revision=None):
        calls.append((path, config, split))
        if path == "masakhane/afrixnli":
            return datasets.Dataset.from_list([{"premise": "P", "hypothesis": "H", "label": 2}, {"premise": "Q", "hypothesis": "I", "label": 0}])
        if path == "masakhane/afrisenti":
            features = datasets.Features({"tweet": datasets.Value("string"), "label": datasets.ClassLabel(names=["positive", "neutral", "negative"])})
            return datasets.Dataset.from_list([{"tweet": "nice", "label": 0}], features=features)
        if path == "openlanguagedata/flores_plus":
            return datasets.Dataset.from_list([{"id": 1, "text": f"{config} sentence", "iso_639_3": config[:3]}])
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    return calls


def test_mirror_rows_use_the_mirror_split_names(shared_data: Path) -> None:
    rows = load_rows(get_task("afrimmlu").source, "hau", "val", shared_data, "afrimmlu")
    assert len(rows) == 83 and set(rows[0]) == {"subject", "question", "choices", "answer"}
    where = locate(get_task("sib200").source, "hau_Latn", "test", shared_data, "sib200")
    assert where.kind == "mirror" and where.where.endswith("sib200/hau_Latn.test.jsonl")


def test_a_missing_dataset_offline_names_the_pull_command(tmp_path: Path) -> None:
    with pytest.raises(DataMissing) as error:
        load_docs(get_task("belebele"), "hau_Latn", data_dir=tmp_path)
    message = str(error.value)
    assert "\n" not in message and "the Hub is offline" in message
    assert f"`accessbench data pull belebele --lang hau_Latn --to {tmp_path}`" in message
    assert locate(get_task("belebele").source, "hau_Latn", "test", tmp_path, "belebele").kind == "missing"


def test_hub_rows_are_renamed_and_decoded_into_the_mirror_shape(fake_hub: list) -> None:
    rows = load_rows(XNLI_SOURCE, "hau", "dev", None, "afrixnli")
    assert fake_hub == [("masakhane/afrixnli", "hau", "validation")]  # the Hub's split name
    assert [row["label"] for row in rows] == ["contradiction", "entailment"]  # class index → name
    assert load_rows(get_task("afrisenti").source, "yor", "test", None, "afrisenti")[0]["label"] == "positive"  # ClassLabel
    flores = load_rows(get_task("flores_bpb").source, "hau_Latn", "devtest", None, "flores_bpb")
    assert flores[0]["sentence"] == "hau_Latn sentence"  # FLORES+ "text" → the mirror's "sentence"


def test_pull_writes_the_mirror_layout_that_then_loads_offline(fake_hub: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = pull(XNLI_SOURCE, "hau", "test", tmp_path)
    assert path == tmp_path / "afrixnli" / "hau.test.jsonl"
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[0]) == {"premise": "P", "hypothesis": "H", "label": "contradiction"}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    docs = load_docs(get_task("afrixnli"), "hau", data_dir=tmp_path)
    assert [doc.target for doc in docs] == ["contradiction", "entailment"]


def test_the_pull_command_fetches_test_and_few_shot_splits_and_the_parallel_language(fake_hub: list, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from bench.cli import app

    result = CliRunner().invoke(app, ["data", "pull", "flores_eng_x", "--lang", "Hausa", "--to", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in (tmp_path / "flores200").iterdir()) == [
        "eng_Latn.dev.jsonl",
        "eng_Latn.devtest.jsonl",
        "hau_Latn.dev.jsonl",
        "hau_Latn.devtest.jsonl",
    ]


# ---------------------------------------------------------------- users' own files
def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def test_a_csv_with_the_standard_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "m.csv", 'prompt,reference,language\n"Hello, how are you?",Lafiya,hau\nSecond,Two,\n')
    rows = read_user_rows(UserFile(path=path, default_language="yor"))
    assert rows == (
        {"prompt": "Hello, how are you?", "reference": "Lafiya", "id": "2", "language": "hau"},
        {"prompt": "Second", "reference": "Two", "id": "3", "language": "yor"},
    )


def test_semicolon_csv_from_a_spreadsheet_and_jsonl_with_lists(tmp_path: Path) -> None:
    assert read_user_rows(UserFile(path=write(tmp_path, "s.csv", "\ufeffprompt;reference\nA;B\n")))[0]["reference"] == "B"
    rows = read_user_rows(UserFile(path=write(tmp_path, "c.jsonl", '{"prompt": "p", "reference": "1", "choices": [1, 2], "id": 7}\n')))
    assert rows[0]["choices"] == ["1", "2"] and rows[0]["id"] == "7"


def test_every_problem_of_a_malformed_file_is_named_by_row_and_column(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.csv",
        'id,prompt,reference,choices\n1,Q1,yes,"[""yes"", ""no""]"\n2,,no,"[""yes"", ""no""]"\n2,Q3,no,yes or no\n4,Q4,maybe,"[""yes"", ""no""]"\n',
    )
    with pytest.raises(UserError) as error:
        read_user_rows(UserFile(path=path))
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: 4 problems: ")
    assert "row 3, column 'prompt': empty prompt" in message
    assert "row 4, column 'id': duplicate id '2' (also on row 3)" in message
    assert "row 4, column 'choices': not a list" in message
    assert "row 5, column 'reference': 'maybe' is not one of its choices" in message


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("nocol.csv", "question,answer\nQ,A\n", "no column 'prompt' (it has: question, answer)"),
        ("latin1.csv", "prompt,reference\nok,ok\nCaf\xe9,x\n".encode("latin-1"), "row 3 is not UTF-8 text (byte 0xe9); save the file as UTF-8"),
        ("bad.jsonl", '{"prompt": "a", "reference": "b"}\n[1, 2]\n', "line 2 is not a JSON object"),
        ("lang.csv", "prompt,reference,language\nQ,A,blorpish\n", "row 2, column 'language': 'blorpish' is not a language code"),
        ("empty.csv", "prompt,reference\n", "has no rows under its header"),
    ],
)
def test_file_problems_are_one_line(tmp_path: Path, name: str, content: str | bytes, fragment: str) -> None:
    with pytest.raises(UserError) as error:
        read_user_rows(UserFile(path=write(tmp_path, name, content)))
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_data_check_tells_where_each_language_comes_from_or_the_fix(shared_data: Path) -> None:
    from conftest import run_cli

    result = run_cli("data", "check", "afrixnli", "--lang", "hau", "--lang", "amh", "--data-dir", str(shared_data))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any("hau" in line and "mirror:" in line and "afrixnli/hau.test.jsonl" in line for line in lines)
    assert any("amh" in line and "missing" in line and f"accessbench data pull afrixnli --lang amh --to {shared_data}" in line for line in lines)


def test_data_pull_offline_says_where_to_run_it(tmp_path: Path) -> None:
    from conftest import run_cli

    result = run_cli("data", "pull", "sib200", "--lang", "hau", "--to", str(tmp_path))
    assert result.returncode == 2 and "run `accessbench data pull` on a machine with internet" in result.stderr
