"""Faults and hostile inputs through the real command line (docs/reliability.md): nothing lost, nothing escapes, no traceback.

Each test reproduces one failure of issue 12 in a subprocess, as a user or an attacker would meet it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from bench import results


def tiny_run(model_dir: Path, output: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Bits per byte of 4 Hausa items on the tiny model (one chunk of 4 samples)."""
    return run_cli(
        "run", "-m", str(model_dir), "-t", "mgsm_symbolic_bpb", "-l", "hau", "--limit", "4", "--batch-size", "1", "--device", "cpu", "-o", str(output), *extra
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def samples_file(output: Path) -> Path:
    [path] = output.glob("*/*/mgsm_symbolic_bpb/hau/samples.jsonl")
    return path


def run_folder(output: Path) -> Path:
    [folder] = (path.parent for path in output.glob("*/manifest.json"))
    return folder


def doc_ids(path: Path) -> list[str]:
    return [json.loads(line)["doc_id"] for line in path.read_text(encoding="utf-8").splitlines()]


def manifest(output: Path) -> dict:
    return results.read_manifest(run_folder(output)) or {}


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished run, copied by each test that damages it."""
    output = tmp_path_factory.mktemp("finished") / "out"
    done = tiny_run(tiny_model_dir, output)
    assert done.returncode == 0, done.stderr
    return output


def copy_of(finished_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "out"))


# ---------------------------------------------------------------- 1-4: data lost or duplicated
def test_damage_in_the_middle_of_a_samples_file_is_reported_and_deletes_nothing(tiny_model_dir: Path, finished_run: Path, tmp_path: Path) -> None:
    output = copy_of(finished_run, tmp_path)
    path = samples_file(output)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1] = lines[1][: len(lines[1]) // 2] + "\n"  # line 2 of 4 is damaged, lines 3 and 4 are good
    path.write_text("".join(lines), encoding="utf-8")
    before = path.read_bytes()
    assert_one_line_error(tiny_run(tiny_model_dir, output), f"{path}: line 2 is not a sample record", "nothing was deleted")
    assert path.read_bytes() == before


def test_a_torn_last_line_is_repaired_and_only_its_sample_recomputed(tiny_model_dir: Path, finished_run: Path, tmp_path: Path) -> None:
    output = copy_of(finished_run, tmp_path)
    path = samples_file(output)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:40], encoding="utf-8")  # kill -9 in the middle of the last append
    again = tiny_run(tiny_model_dir, output)
    assert again.returncode == 0, again.stderr
    assert "(1 samples computed now" in again.stdout
    assert sorted(doc_ids(path)) == sorted(json.loads(line)["doc_id"] for line in lines)


HOLD_LOCK = """
import sys
from pathlib import Path
from bench.run_lock import RunLock
with RunLock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_second_run_of_a_locked_folder_names_the_holder_and_exits(tiny_model_dir: Path, finished_run: Path, tmp_path: Path) -> None:
    output = copy_of(finished_run, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_folder(output))], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = manifest(output)
        assert_one_line_error(tiny_run(tiny_model_dir, output), "is in use by another accessbench run", f"pid {holder.pid} on host")
        assert manifest(output) == before
    finally:
        holder.communicate("")


def test_two_runs_started_together_write_every_sample_once(tiny_model_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    command = [sys.executable, "-m", "bench", "run", "-m", str(tiny_model_dir), "-t", "mgsm_symbolic_bpb", "-l", "hau", "--limit", "4"]
    command += ["--batch-size", "1", "--device", "cpu", "-o", str(output)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    runs = [subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [(process.wait(timeout=300), process.stderr.read() if process.stderr else "") for process in runs]
    for code, stderr in outcomes:
        assert "Traceback" not in stderr
        assert code == 0 or (code == 2 and "is in use by another accessbench run" in stderr), stderr
    ids = doc_ids(samples_file(output))
    assert len(ids) == 4 and len(set(ids)) == 4
    statuses = [invocation["status"] for invocation in manifest(output)["invocations"]]
    assert statuses == ["finished"] * sum(code == 0 for code, _ in outcomes)
    assert not list(run_folder(output).glob("*.partial"))


def test_a_corrupt_manifest_is_set_aside_and_the_run_resumes(tiny_model_dir: Path, finished_run: Path, tmp_path: Path) -> None:
    output = copy_of(finished_run, tmp_path)
    folder = run_folder(output)
    (folder / "manifest.json").write_text('{"run_id": "x", "invocations": [', encoding="utf-8")
    again = tiny_run(tiny_model_dir, output)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr and "(0 samples computed now" in again.stdout
    [note] = [line for line in again.stderr.splitlines() if "damaged" in line]
    [aside] = folder.glob("manifest.json.damaged-*")
    assert aside.name in note and aside.read_text(encoding="utf-8") == '{"run_id": "x", "invocations": ['
    assert [invocation["status"] for invocation in manifest(output)["invocations"]] == ["finished", "finished"]  # each process's own record survives


def test_an_invocation_left_running_is_marked_killed_by_the_next_run(tiny_model_dir: Path, finished_run: Path, tmp_path: Path) -> None:
    output = copy_of(finished_run, tmp_path)
    [path] = (run_folder(output) / "invocations").glob("*.json")
    recorded = json.loads(path.read_text(encoding="utf-8"))
    recorded["status"] = "running"  # what a power cut leaves (no crash watcher survives it either)
    path.write_text(json.dumps(recorded), encoding="utf-8")
    again = tiny_run(tiny_model_dir, output)
    assert again.returncode == 0, again.stderr
    assert [invocation["status"] for invocation in manifest(output)["invocations"]] == ["killed", "finished"]
    assert results.count_saved_samples(run_folder(output)) == 4


# ---------------------------------------------------------------- 7-8: nothing escapes the output folder
def test_a_language_cell_that_is_a_path_is_an_error_naming_the_row(tiny_model_dir: Path, tmp_path: Path) -> None:
    task = tmp_path / "work" / "sms.csv"
    task.parent.mkdir()
    task.write_text("prompt,reference,language\nHello,Sannu,Hausa\nBye,Sai anjima,Hausa/../../../../elsewhere\n", encoding="utf-8")
    result = run_cli("run", "--task-file", str(task), "-m", str(tiny_model_dir), "--device", "cpu", "-o", str(tmp_path / "work" / "out"))
    assert_one_line_error(result, "row 3, column 'language'", "is not a language code")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["work"] and not (tmp_path / "work" / "out").exists()


def test_a_language_name_in_a_task_file_is_filed_under_its_code(tiny_model_dir: Path, tmp_path: Path) -> None:
    task = tmp_path / "sms.csv"
    task.write_text("prompt,reference,language\nHello,Sannu,Hausa\n", encoding="utf-8")
    done = run_cli("run", "--task-file", str(task), "-m", str(tiny_model_dir), "--device", "cpu", "--batch-size", "1", "-o", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert [path.parent.name for path in (tmp_path / "out").glob("*/*/sms/*/summary.json")] == ["hau"]


def test_a_run_name_with_a_path_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "work" / "escape.yaml"
    config.parent.mkdir()
    config.write_text(f"name: ../../escaped\nmodels: ['{tiny_model_dir}']\ntasks: [mgsm_symbolic_bpb]\nlanguages: [hau]\noutput: {tmp_path / 'work' / 'out'}\n")
    assert_one_line_error(run_cli("run", str(config)), f"{config}: field 'name'", "must be a plain name")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["work"] and sorted(path.name for path in config.parent.iterdir()) == ["escape.yaml"]


# ---------------------------------------------------------------- 10, 11, 14: one line where a traceback was
@pytest.mark.parametrize("size", ["0", "-2"])
def test_a_batch_size_below_one_is_refused_before_loading(tiny_model_dir: Path, tmp_path: Path, size: str) -> None:
    config = tmp_path / "batch.yaml"
    config.write_text(f"models: ['{tiny_model_dir}']\ntasks: [mgsm_symbolic_bpb]\nlanguages: [hau]\nbatch_size: {size}\noutput: {tmp_path / 'out'}\n")
    assert_one_line_error(run_cli("run", str(config)), f"{config}: field 'batch_size'", "must be a positive integer or 'auto'", f"(got {size})")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("content", "why"),
    [(os.urandom(4096), "it does not start with the GGUF signature"), (b"GGUF\x03\x00\x00\x00\x02\x00", "it is truncated or damaged")],
    ids=["random-bytes", "truncated"],
)
def test_an_invalid_gguf_is_named_with_its_size(tmp_path: Path, content: bytes, why: str) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(content)
    result = run_cli("run", "-m", str(model), "-t", "mgsm_symbolic_tax", "-l", "hau", "-o", str(tmp_path / "out"))
    assert_one_line_error(result, f"{model} is not a valid GGUF file ({len(content):,} bytes; {why})")


@pytest.mark.parametrize(
    ("name", "content", "where"),
    [
        ("nul.csv", "prompt,reference\nHello,Sannu\nBye,Sai\x00anjima\n", "row 3, column 'reference': a NUL byte"),
        ("nul.jsonl", '{"prompt": "Hello", "reference": "Sannu"}\n{"prompt": "Bye\\u0000", "reference": "Sai"}\n', "line 2, column 'prompt': a NUL byte"),
    ],
)
def test_a_nul_byte_in_a_task_file_is_refused_with_row_and_column(tiny_model_dir: Path, tmp_path: Path, name: str, content: str, where: str) -> None:
    task = tmp_path / name
    task.write_text(content, encoding="utf-8")
    result = run_cli("run", "--task-file", str(task), "-m", str(tiny_model_dir), "-l", "hau", "-o", str(tmp_path / "out"))
    assert_one_line_error(result, str(task), where)


# ---------------------------------------------------------------- 12: a full disk
DISK_FILLS_UP = """
import errno, os, sys

real_fsync, budget = os.fsync, int(sys.argv[1])


def fsync_on_a_full_disk(fd):
    # Delayed allocation (ext4, xfs) reports a full disk when data is flushed: here from the budget-th fsync on, every one.
    global budget
    if budget == 0:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    budget -= 1
    real_fsync(fd)


os.fsync = fsync_on_a_full_disk
sys.argv = ["accessbench", *sys.argv[2:]]
from bench.cli import main

main()
"""


def test_a_full_disk_is_one_line_leaves_no_partial_file_and_resumes(tiny_model_dir: Path, tmp_path: Path) -> None:
    """ENOSPC is injected into os.fsync in the CLI's own process (no small filesystem can be mounted in a test):
    the manifest, this process's invocation record twice and one chunk of samples are written, then the disk is full and
    stays full, cleanup included."""
    script = tmp_path / "disk_fills_up.py"
    script.write_text(DISK_FILLS_UP, encoding="utf-8")
    output = tmp_path / "out"
    args = [
        "run",
        "-m",
        str(tiny_model_dir),
        "-t",
        "mgsm_symbolic_bpb",
        "-l",
        "hau,eng",
        "--limit",
        "5",
        "--batch-size",
        "1",
        "--device",
        "cpu",
        "-o",
        str(output),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    full = subprocess.run([sys.executable, str(script), "4", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    line = assert_one_line_error(full, f"no space left on {run_folder(output)}", "free space and rerun")
    saved = results.count_saved_samples(run_folder(output))
    assert f"; {saved} samples are saved in" in line and saved == 4  # 5 items per language in chunks of 4: the second chunk failed
    assert not list(output.rglob("*.partial"))
    assert [invocation["status"] for invocation in manifest(output)["invocations"]] == ["failed: no space left on the disk"]
    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "(6 samples computed now" in resumed.stdout
    frame = results.load(run_folder(output))
    assert len(frame) == 10 and not frame.duplicated(["language", "doc_id"]).any()


# ---------------------------------------------------------------- 13: user strings are printed as they are
def test_user_strings_that_look_like_markup_are_printed_verbatim(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "[/x] [red]tiny"))
    done = tiny_run(model, tmp_path / "out")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "[red]tiny" in done.stdout
    folder = tmp_path / "[bold]tasks[/x]"  # a folder "[bold]tasks[" holding "x]"
    folder.mkdir(parents=True)
    (folder / "data.csv").write_text("prompt,reference\nHello,Sannu\n", encoding="utf-8")
    (folder / "task.yaml").write_text("file: data.csv\nname: Not-A-Name\n", encoding="utf-8")
    result = run_cli("run", "--task-file", str(folder / "task.yaml"), "-m", str(model), "-l", "hau", "-o", str(tmp_path / "out"))
    assert_one_line_error(result, str(folder / "task.yaml"), "'^[a-z0-9_]+$'")


# ---------------------------------------------------------------- 5: reports survive one bad folder
def damage(run: Path, kind: str) -> Path:
    """Damage a copy of a run folder as a crash, an editor or another version of accessbench would; return what to name."""
    cell = next(run.glob("*/mgsm_symbolic_bpb/hau"))
    if kind == "manifest":
        (run / "manifest.json").write_text("{", encoding="utf-8")
        return run
    if kind == "summary":
        (cell / "summary.json").write_text('{"metrics": ', encoding="utf-8")
    elif kind == "metric":
        summary = json.loads((cell / "summary.json").read_text(encoding="utf-8"))
        summary["metrics"] = {"bits_per_byte_v2": summary["metrics"].pop("bits_per_byte")}
        (cell / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    else:  # samples without a field
        records = [json.loads(line) for line in (cell / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
        (cell / "samples.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "input_tokens"}) + "\n" for r in records))
    return cell


def test_reports_skip_a_damaged_run_or_cell_with_one_line_each(finished_run: Path, tmp_path: Path) -> None:
    source = run_folder(finished_run)
    named = {}
    for kind in ("intact", "manifest", "summary", "metric", "samples"):
        run = Path(shutil.copytree(source, tmp_path / "results" / kind / source.name))
        named[kind] = None if kind == "intact" else damage(run, kind)
    results_dir = str(tmp_path / "results")
    commands = {
        "report": ["report", results_dir, "--out", str(tmp_path / "site")],
        "card": ["card", results_dir, "--lang", "hau", "--out", str(tmp_path / "cards")],
        "recommend": ["recommend", results_dir, "--lang", "Hausa"],
        "cost": ["cost", results_dir],
    }
    for command, args in commands.items():
        result = run_cli(*args)
        assert result.returncode == 0 and "Traceback" not in result.stderr, f"{command}: {result.stderr}"
        skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped: ")]
        expected = ["manifest", "summary", "samples"] + ([] if command == "cost" else ["metric"])  # cost reads no metric
        assert len(skipped) == len(expected), f"{command}: {result.stderr}"
        for kind in expected:
            assert sum(line.startswith(f"skipped: {named[kind]}: ") for line in skipped) == 1, f"{command} {kind}: {skipped}"
    leaderboard = (tmp_path / "site" / "leaderboard.csv").read_text(encoding="utf-8").splitlines()
    assert len(leaderboard) == 2 and f"{tmp_path}/results/intact/" in leaderboard[1]  # the header, and the intact cell
    assert list((tmp_path / "cards").glob("card-*.html"))


# ---------------------------------------------------------------- 6 and 9: priced anywhere, exported safely
HOSTILE_PROFILE = "+<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def hostile_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run named '=1+2', of a model in a folder '@SUM(1+1)', priced with a profile file (named with HTML) deleted afterwards."""
    base = tmp_path_factory.mktemp("hostile")
    profile = base / "profiles" / "my-box.yaml"
    profile.parent.mkdir()
    profile.write_text(f"name: '{HOSTILE_PROFILE}'\nprice_usd: 500\nlifetime_years: 3\nhours_per_day: 6\n", encoding="utf-8")
    model = shutil.copytree(tiny_model_dir, base / "@SUM(1+1)")
    config = base / "hostile.yaml"
    config.write_text(f"name: '=1+2'\nmodels: ['{model}']\ntasks: [mgsm_symbolic_bpb]\nlanguages: [hau]\nlimit: 2\nbatch_size: 1\n", encoding="utf-8")
    done = run_cli("run", str(config), "--hardware", str(profile), "-o", str(base / "results"), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    shutil.rmtree(profile.parent)  # results copied to another machine, or reported from another folder
    return base / "results"


def squeezed(text: str) -> str:
    return "".join(text.split())


def test_a_run_is_priced_from_its_recorded_profile_anywhere(hostile_run: Path, tmp_path: Path) -> None:
    elsewhere = Path(shutil.copytree(hostile_run, tmp_path / "copied"))
    cost = run_cli("cost", str(elsewhere), cwd=tmp_path)
    assert cost.returncode == 0, cost.stderr
    assert squeezed(f"Priced as hardware '{HOSTILE_PROFILE}'") in squeezed(cost.stdout)  # the table's caption
    report = run_cli("report", str(elsewhere), "--out", str(tmp_path / "site"), cwd=tmp_path)
    assert report.returncode == 0 and "skipped" not in report.stderr, report.stderr
    repriced = run_cli("cost", str(elsewhere), "--hardware", "desktop-gpu-8gb", cwd=tmp_path)
    assert repriced.returncode == 0 and "Pricedashardware'desktop-gpu-8gb'" in squeezed(repriced.stdout), repriced.stderr


def test_exports_neutralise_formulas_and_escape_html(hostile_run: Path, tmp_path: Path) -> None:
    import csv

    assert run_cli("report", str(hostile_run), "--out", str(tmp_path / "site")).returncode == 0
    with (tmp_path / "site" / "leaderboard.csv").open(encoding="utf-8", newline="") as handle:
        [row] = list(csv.DictReader(handle))
    assert row["model"] == "'@SUM(1+1)" and row["run_id"].startswith("'=1+2-") and row["hardware_profile"] == "'" + HOSTILE_PROFILE
    assert not [value for value in row.values() if value.startswith(("=", "+", "-", "@", "\t", "\r"))]
    markdown = (tmp_path / "site" / "leaderboard.md").read_text(encoding="utf-8")
    assert "<img" not in markdown and "+&lt;img src=x onerror=alert(1)&gt;" in markdown


def test_results_of_a_newer_schema_are_refused_by_run_and_skipped_by_reports(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"models: [{{ref: {tiny_model_dir}, device: cpu, backend: hf}}]\ntasks: [mgsm_symbolic_tax]\nlanguages: [eng]\nlimit: 2\noutput: {tmp_path / 'out'}\n"
    )
    assert run_cli("run", str(config)).returncode == 0
    [manifest_file] = (tmp_path / "out").glob("*/manifest.json")
    manifest = json.loads(manifest_file.read_text())
    assert manifest["schema_version"] == 3
    assert {json.loads(path.read_text())["schema_version"] for path in (tmp_path / "out").rglob("summary.json")} == {3}
    manifest["schema_version"] = 99
    manifest["versions"]["accessbench"] = "9.0.0"
    manifest_file.write_text(json.dumps(manifest))
    again = run_cli("run", str(config))
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"error: {manifest_file} was written by accessbench 9.0.0 (results schema 99); this accessbench reads schema 3 and older: "
        "upgrade accessbench to read it, or run into another --output folder"
    ]
    report = run_cli("cost", str(tmp_path / "out"))
    assert f"{manifest_file} was written by accessbench 9.0.0 (results schema 99)" in " ".join(report.stderr.split())
