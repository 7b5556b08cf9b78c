"""An organisation's own CSV/JSONL as a task, and the plan's handling of data that is missing offline (tiny random model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FIXTURE_DATA, FIXTURES, run_cli

from bench.config import parse_config
from bench.data import DataMissing
from bench.plan import make_plan
from bench.runner import run
from bench.tasks import task_from_file

TASK_FILES = FIXTURES / "task_files"


def config(model_dir: Path, output: Path, **fields: object):
    return parse_config({"name": "t", "models": [{"ref": str(model_dir), "device": "cpu"}], "batch_size": 2, "output": str(output), **fields}, "test")


def test_a_csv_becomes_a_generation_task_and_a_jsonl_with_choices_a_multiple_choice_one() -> None:
    clinic = task_from_file(TASK_FILES / "clinic_questions.csv")
    assert (clinic.name, clinic.kind, clinic.languages, clinic.metrics) == ("clinic_questions", "generate", ["eng", "swa"], ["chrf_pp", "exact_match"])
    yes_no = task_from_file(TASK_FILES / "yes_no.jsonl", default_language="hau")
    assert (yes_no.kind, yes_no.languages, yes_no.metrics) == ("multiple_choice", ["hau"], ["acc", "acc_norm_bytes"])
    named = task_from_file(TASK_FILES / "clinic_questions.yaml")
    assert named.name == "clinic_short_answers" and named.generation.max_new_tokens == 8


def test_a_task_yaml_renames_columns(tmp_path: Path) -> None:
    (tmp_path / "sms.csv").write_text("msg,expected\nHello,Sannu\n", encoding="utf-8")
    (tmp_path / "sms.yaml").write_text("file: sms.csv\nprompt: msg\nreference: expected\nlanguage: hau\n", encoding="utf-8")
    task = task_from_file(tmp_path / "sms.yaml")
    assert task.languages == ["hau"]
    from bench.tasks import load_docs

    [doc] = load_docs(task, "hau")
    assert (doc.id, doc.prompt, doc.target) == ("2", "Hello", "Sannu")
    (tmp_path / "typo.yaml").write_text("file: sms.csv\npromt: msg\n", encoding="utf-8")
    with pytest.raises(Exception, match="unknown key 'promt'.*did you mean 'prompt'"):
        task_from_file(tmp_path / "typo.yaml")


def test_task_files_run_end_to_end_with_confidence_intervals(tiny_model_dir: Path, tmp_path: Path) -> None:
    outcome = run(
        config(
            tiny_model_dir, tmp_path, task_files=[str(TASK_FILES / "clinic_questions.yaml"), str(TASK_FILES / "yes_no.jsonl")], generation={"max_new_tokens": 4}
        )
    )
    cells = {(s["task"], s["language"]): s for s in outcome.summaries}
    assert set(cells) == {("clinic_short_answers", "eng"), ("clinic_short_answers", "swa"), ("yes_no", "und")}
    assert cells[("clinic_short_answers", "eng")]["n_samples"] == 2 and cells[("yes_no", "und")]["task_kind"] == "multiple_choice"
    for summary in outcome.summaries:
        for score in summary["metrics"].values():
            assert score["value"] is not None and score["ci_low"] <= score["value"] <= score["ci_high"]


def test_editing_a_task_file_starts_a_new_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = tmp_path / "m.csv"
    data.write_text("prompt,reference\nA,B\n", encoding="utf-8")
    before = config(tiny_model_dir, tmp_path, task_files=[str(data)]).run_id()
    data.write_text("prompt,reference\nA,C\n", encoding="utf-8")
    assert config(tiny_model_dir, tmp_path, task_files=[str(data)]).run_id() != before


def test_a_broken_csv_fails_on_the_command_line_naming_the_row(tmp_path: Path, tiny_model_dir: Path) -> None:
    broken = tmp_path / "broken.csv"
    broken.write_text('prompt,reference,choices\nOK?,yes,"[""yes"", ""no""]"\n,no,"[""yes"", ""no""]"\nFine?,yes,yes/no\n', encoding="utf-8")
    result = run_cli("run", "--task-file", str(broken), "-m", str(tiny_model_dir), "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert "row 3, column 'prompt': empty prompt" in line and "row 4, column 'choices': not a list" in line


def test_a_missing_dataset_offline_fails_with_the_pull_command(tmp_path: Path, tiny_model_dir: Path) -> None:
    result = run_cli("run", "-t", "belebele", "-l", "hau", "-m", str(tiny_model_dir), "--data-dir", str(tmp_path), "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"run `accessbench data pull belebele --lang hau_Latn --to {tmp_path}`" in result.stderr


def test_a_cell_without_data_is_skipped_with_the_pull_command_when_its_task_has_others(shared_data: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    plan = make_plan(config(tiny_model_dir, tmp_path, tasks=["afrixnli", "afriqa"], languages=["hau", "amh"], limit=2, data_dir=str(shared_data)))
    assert sorted((cell.task.name, cell.language) for cell in plan.cells) == [("afriqa", "hau"), ("afrixnli", "hau")]
    notes = " | ".join(plan.notes)
    assert "task afriqa has no 'amh'" in notes and "accessbench data pull afrixnli --lang amh" in notes
    with pytest.raises(DataMissing):
        make_plan(config(tiny_model_dir, tmp_path, tasks=["afrixnli"], languages=["amh"], data_dir=str(shared_data)))


def test_the_runs_fewshot_setting_reaches_the_prompts(shared_data: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    plan = make_plan(config(tiny_model_dir, tmp_path, tasks=["afrimmlu"], languages=["yor"], limit=1, fewshot=2, data_dir=str(shared_data)))
    assert plan.cells[0].docs[0].prompt.count("The following is a multiple choice question") == 3


def test_fixture_tasks_run_on_the_tiny_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    outcome = run(config(tiny_model_dir, tmp_path, tasks=["belebele", "global_mmlu"], languages=["eng"], data_dir=str(FIXTURE_DATA)))
    assert {(s["task"], s["language"], s["n_samples"]) for s in outcome.summaries} == {("belebele", "eng_Latn", 3), ("global_mmlu", "en", 3)}
