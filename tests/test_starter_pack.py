"""The starter data pack inside the package: small, licensed, parallel, rebuilt by its script, and the last data source."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.config import RunConfig
from bench.data import load_rows, locate
from bench.paths import starter_dir
from bench.tasks import get_task, load_docs
from tests.conftest import REPO, run_cli

MAX_BYTES = 2 * 1000 * 1000


def test_the_pack_stays_under_2_mb_and_every_file_has_a_licence_and_attribution_beside_it() -> None:
    files = [path for path in starter_dir().rglob("*") if path.is_file()]
    assert sum(path.stat().st_size for path in files) <= MAX_BYTES
    data = [path for path in files if path.suffix == ".jsonl"]
    assert len(data) > 40
    for path in data:
        assert (path.parent / "LICENSE").is_file() and (path.parent / "ATTRIBUTION.md").is_file(), path


def test_the_pack_is_in_git_and_inside_the_package() -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", str(starter_dir() / "sib200" / "hau_Latn.test.jsonl")], cwd=REPO)
    assert ignored.returncode == 1  # not ignored: it ships with the checkout, and (under bench/) inside the wheel
    assert starter_dir().parent.name == "bench"


def test_parallel_datasets_keep_the_same_items_in_every_language() -> None:
    for dataset, id_field in (("sib200", "index_id"), ("flores200", "id"), ("tico19", "stringID")):
        for split in {path.name.split(".")[1] for path in (starter_dir() / dataset).glob("*.jsonl")}:
            ids = {
                tuple(json.loads(line)[id_field] for line in path.read_text(encoding="utf-8").splitlines())
                for path in (starter_dir() / dataset).glob(f"*.{split}.jsonl")
            }
            assert len(ids) == 1, (dataset, split)


def test_the_script_rebuilds_the_same_pack_from_the_mirror(shared_data: Path, tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(REPO / "tools" / "build_starter_pack.py"), "--mirror", str(shared_data), "--out", str(tmp_path / "pack")], check=True)
    built = {path.relative_to(tmp_path / "pack"): path.read_bytes() for path in (tmp_path / "pack").rglob("*") if path.is_file()}
    shipped = {path.relative_to(starter_dir()): path.read_bytes() for path in starter_dir().rglob("*") if path.is_file()}
    assert built == shipped


def test_offline_without_a_mirror_rows_come_from_the_pack_and_data_check_says_so(tmp_path: Path) -> None:
    source = get_task("sib200").source
    assert locate(source, "hau_Latn", "test", None, "sib200").kind == "starter"
    assert len(load_rows(source, "hau_Latn", "test", None, "sib200")) == 40
    assert locate(source, "lao_Laoo", "test", None, "sib200").kind == "missing"  # not in the pack
    docs = load_docs(get_task("tico19_x_eng"), "som", limit=3, data_dir=tmp_path)  # Somali never from the Hub; the pack has the realigned copy
    assert len(docs) == 3 and docs[0].target
    checked = run_cli("data", "check", "tico19_x_eng", "--lang", "hau")
    assert checked.returncode == 0 and "starter" in checked.stdout and "a sample" in checked.stdout
    listed = run_cli("tasks")
    assert listed.returncode == 0 and "starter pack: 10 languages" in listed.stdout


def test_a_mirror_wins_over_the_pack(shared_data: Path) -> None:
    where = locate(get_task("sib200").source, "hau_Latn", "test", shared_data, "sib200")
    assert where.kind == "mirror" and len(load_rows(get_task("sib200").source, "hau_Latn", "test", shared_data, "sib200")) == 204


def test_data_dir_at_starter_reads_only_the_pack(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCESSBENCH_DATA", str(shared_data))
    where = locate(get_task("flores_bpb").source, "khm_Khmr", "devtest", Path("@starter"), "flores_bpb")
    assert where.kind == "starter" and str(starter_dir()) in where.where


def test_task_languages_narrows_a_task_to_some_of_the_runs_languages(tiny_model_dir: Path, tmp_path: Path) -> None:
    from bench.plan import make_plan

    config = RunConfig.model_validate(
        {
            "models": [{"ref": str(tiny_model_dir), "backend": "hf"}],
            "tasks": ["tico19_x_eng", "flores_x_eng"],
            "languages": ["eng", "Hausa", "yor"],
            "task_languages": {"tico19_x_eng": ["hau"], "flores_x_eng": ["yor"]},
            "limit": 2,
            "output": str(tmp_path),
        }
    )
    plan = make_plan(config)
    assert sorted((cell.task.name, cell.language) for cell in plan.cells) == [("flores_x_eng", "yor_Latn"), ("tico19_x_eng", "hau")]
    assert not plan.notes  # languages left out on purpose are not reported as missing
    assert config.model_copy(update={"task_languages": {}}).fingerprint() != config.fingerprint()
