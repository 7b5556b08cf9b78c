"""A native library that crashes: the llama.cpp probe, the auto fallback, and a crash in the middle of a run."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from bench import results
from bench.config import ModelConfig
from bench.models import native_probe
from bench.models.native_probe import ProbeResult, probe_llama_cpp

CRASHING_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from bench.config import parse_config
    from bench.models.hf import HFBackend
    from bench.runner import run

    calls = 0

    def crashing_factory(model, config):
        backend = HFBackend(model, config.batch_size_for(model), config.seed)
        rolling = backend.loglikelihood_rolling

        def crash_on_the_fifth_call(texts):
            global calls
            calls += 1
            if calls == 5:  # the warm-up is call 1: three chunks are saved before the crash
                os.kill(os.getpid(), signal.SIGSEGV)
            return rolling(texts)

        backend.loglikelihood_rolling = crash_on_the_fifth_call
        return backend

    config = parse_config(
        {"name": "crash", "models": [{"ref": sys.argv[1], "device": "cpu", "backend": "hf"}], "tasks": ["mgsm_symbolic_bpb"],
         "languages": ["eng", "hau"], "limit": 8, "batch_size": 1, "output": sys.argv[2]},
        "test",
    )
    run(config, backend_factory=crashing_factory)
    """
)


def test_a_native_crash_mid_run_keeps_every_finished_sample_and_names_the_cell(tiny_model_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "crashing_run.py"
    script.write_text(CRASHING_RUN, encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(script), str(tiny_model_dir), str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGSEGV
    run_dir = next((tmp_path / "out").iterdir())
    saved = len(results.load(run_dir))
    assert saved == 3 * 4  # three chunks of four (batch 1 × 4 per chunk) reached the disk
    message = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert message == [
        f"error: the run crashed (Segmentation fault) while evaluating {tiny_model_dir} · mgsm_symbolic_bpb · hau; "
        f"{saved} finished samples are saved in {run_dir}; details in {run_dir}/crash-{_crashed_pid(run_dir)}.log; rerun the same command to resume"
    ]
    invocation = (results.read_manifest(run_dir) or {})["invocations"][-1]
    assert invocation["status"] == f"crashed: Segmentation fault in {tiny_model_dir} · mgsm_symbolic_bpb · hau"
    assert "Fatal Python error: Segmentation fault" in (run_dir / f"crash-{invocation['pid']}.log").read_text()


def _crashed_pid(run_dir: Path) -> int:
    return int((results.read_manifest(run_dir) or {})["invocations"][-1]["pid"])


# ---------------------------------------------------------------- the probe
def test_a_probe_child_that_crashes_is_a_failed_probe_with_the_fix() -> None:
    result = probe_llama_cpp(command=[sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"])
    assert not result.ok
    assert "crashed with SIGSEGV on this CPU" in result.reason and "python install.py llamacpp" in result.reason
    assert "\n" not in result.reason


def test_a_probe_child_that_computes_wrong_numbers_is_a_failed_probe() -> None:
    pytest.importorskip("llama_cpp")
    wrong = json.dumps({"batched": [-1.0] * (len(native_probe.PROBE_TOKENS) - 1)})
    result = probe_llama_cpp(command=[sys.executable, "-c", f"print({wrong!r})"])
    assert not result.ok and "computes wrong log-likelihoods on this CPU (batched: off by" in result.reason


def test_the_installed_build_passes_the_probe_and_the_verdict_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("llama_cpp")
    monkeypatch.setenv("ACCESSBENCH_CACHE", str(tmp_path))
    logprobs = native_probe.llama_cpp_logprobs(native_probe.write_probe_gguf(tmp_path / "probe.gguf"), native_probe.PROBE_TOKENS)
    reference = native_probe.transformers_logprobs(tmp_path / "probe.gguf", native_probe.PROBE_TOKENS)
    spread = max(abs(a - b) for a, b in itertools.pairwise(reference))
    assert spread > 1.0  # the tiny model is not uniform: a broken kernel would show
    for values in logprobs.values():
        assert max(abs(a - b) for a, b in zip(values, reference)) < native_probe.TOLERANCE_NATS
    first = probe_llama_cpp()
    assert first == ProbeResult(True, "", native_probe.build_identity())
    [cached] = (tmp_path / "probes").glob("llamacpp-*.json")
    cached.write_text(json.dumps({"ok": False, "reason": "recorded verdict", "build": first.build}))
    assert probe_llama_cpp().reason == "recorded verdict"  # read from the cache, not probed again


@pytest.mark.integration
def test_a_failed_probe_makes_auto_fall_back_and_an_explicit_llamacpp_refuse(smollm2_ref: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("llama_cpp")
    cache = tmp_path / "cache"
    converted = native_probe.cache_dir() / "converted"
    (cache / "probes").mkdir(parents=True)
    if converted.is_dir():  # reuse the converted SmolLM2 checkpoint rather than converting it again
        (cache / "converted").symlink_to(converted)
    monkeypatch.setenv("ACCESSBENCH_CACHE", str(cache))
    reason = "llama.cpp (test build) crashed with SIGSEGV on this CPU; rebuild it with `python install.py llamacpp`"
    native_probe._cache_file(native_probe.build_identity()).write_text(json.dumps({"ok": False, "reason": reason, "build": "test build"}))
    env = {"ACCESSBENCH_CACHE": str(cache)}

    auto = run_cli("run", "--model", smollm2_ref, "--task", "mgsm_symbolic_tax", "--lang", "eng", "--limit", "1", "--output", str(tmp_path / "auto"), env=env)
    assert auto.returncode == 0, auto.stderr
    assert f"note: {smollm2_ref} runs on transformers, not llama.cpp: {reason}" in " ".join(auto.stderr.split())
    manifest = json.loads(next((tmp_path / "auto").glob("*/manifest.json")).read_text())
    assert [model["backend"] for model in manifest["config"]["models"]] == ["hf"]

    config = tmp_path / "explicit.yaml"
    config.write_text(
        f"models: [{{ref: {smollm2_ref}, backend: llamacpp}}]\ntasks: [mgsm_symbolic_tax]\nlanguages: [eng]\nlimit: 1\noutput: {tmp_path / 'explicit'}\n"
    )
    explicit = run_cli("run", str(config), env=env)
    assert explicit.returncode == 2
    assert explicit.stderr.strip().splitlines() == [f"error: backend llamacpp cannot run here: {reason}; or use backend: hf"]
    assert not (tmp_path / "explicit").exists()  # refused before any work


def test_choose_backend_notes_the_fallback(smollm2_ref: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("llama_cpp")
    from bench.models import registry

    monkeypatch.setattr(registry, "probe_llama_cpp", lambda: ProbeResult(False, "it crashed; rebuild", "b"))
    notes: list[str] = []
    assert registry.choose_backend(ModelConfig(ref=smollm2_ref, device="cpu"), notes) == "hf"
    assert notes == [f"{smollm2_ref} runs on transformers, not llama.cpp: it crashed; rebuild"]


def test_choose_backend_notes_that_llama_cpp_is_not_installed(smollm2_ref: str, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.models import registry

    monkeypatch.setattr(registry.BackendEntry, "installed", lambda self: self.name != "llamacpp")
    notes: list[str] = []
    assert registry.choose_backend(ModelConfig(ref=smollm2_ref, device="cpu"), notes) == "hf"
    assert notes == [
        f"{smollm2_ref} runs on transformers, after a one-off conversion of its GGUF; llama.cpp would run the file as it is "
        "(`python install.py llamacpp` in the accessbench checkout)"
    ]
    assert registry.choose_backend(ModelConfig(ref=str(tiny_model_dir), device="cpu"), notes) == "hf" and len(notes) == 1  # not a GGUF: no note
