"""dtype: auto on a CPU: bfloat16 only with native bfloat16 and a passed, cached log-likelihood check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.models import cpu_dtype
from bench.models.cpu_dtype import CHECK_TEXTS, auto_cpu_dtype, cpu_flags, verdict_path


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCESSBENCH_CACHE", str(tmp_path / "cache"))


def _measure(difference: float, calls: list[str]):
    def measure(dtype: str) -> list[float]:
        calls.append(dtype)
        return [-20.0 - (difference if dtype == "bfloat16" else 0.0)] * len(CHECK_TEXTS)

    return measure


def test_without_native_bfloat16_auto_stays_float32_and_checks_nothing() -> None:
    calls: list[str] = []
    choice = auto_cpu_dtype("m", _measure(0.0, calls), flags={"avx2", "avx512f", "fma"})
    assert choice.dtype == "float32" and "no native bfloat16" in choice.reason and calls == []


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_native_bfloat16_and_close_log_likelihoods_pick_bfloat16_once_then_from_the_cache(flag: str) -> None:
    calls: list[str] = []
    choice = auto_cpu_dtype("model-a", _measure(0.04, calls), flags={"avx2", flag})
    assert choice.dtype == "bfloat16" and flag in choice.reason and "0.040 nats" in choice.reason
    assert calls == ["float32", "bfloat16"]
    assert json.loads(verdict_path("model-a").read_text())["max_difference_nats"] == pytest.approx(0.04)
    again = auto_cpu_dtype("model-a", _measure(5.0, calls), flags={flag})
    assert again == choice and calls == ["float32", "bfloat16"]  # the verdict is reused, not measured again


def test_native_bfloat16_but_log_likelihoods_too_far_apart_keep_float32() -> None:
    choice = auto_cpu_dtype("model-b", _measure(0.3, []), flags={"amx_bf16"})
    assert choice.dtype == "float32" and "0.300 nats" in choice.reason and "over the 0.1 allowed" in choice.reason


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n", encoding="utf-8")
    assert "avx512_bf16" in cpu_flags(tmp_path / "cpuinfo") and cpu_flags(tmp_path / "missing") == frozenset()


def test_the_check_runs_on_a_real_model_and_its_choice_is_in_the_model_info(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.config import ModelConfig
    from bench.models.hf import HFBackend

    spec = ModelConfig(ref=str(tiny_model_dir), backend="hf", device="cpu")
    here = HFBackend(spec)  # this machine's own flags
    assert here.info.dtype_reason and here.info.dtype_reason.startswith("auto: ")
    monkeypatch.setattr(cpu_dtype, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    backend = HFBackend(spec)
    verdict = json.loads(next((Path(cpu_dtype.cache_dir()) / "dtype-checks").glob("bf16-*.json")).read_text())
    assert 0 <= verdict["max_difference_nats"] < 50 and verdict["texts"] == len(CHECK_TEXTS)
    assert backend.info.dtype == ("bfloat16" if verdict["max_difference_nats"] <= 0.1 else "float32")
    assert "nats" in (backend.info.dtype_reason or "") and str(next(iter(backend.model.parameters())).dtype) == f"torch.{backend.info.dtype}"
    assert HFBackend(spec.model_copy(update={"dtype": "float32"})).info.dtype_reason == "as configured"
