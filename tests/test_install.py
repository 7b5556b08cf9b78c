"""install.py: where the llama.cpp wheel it builds is kept."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    spec = importlib.util.spec_from_file_location("accessbench_install", REPO / "install.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("ACCESSBENCH_CACHE", str(tmp_path))
    return module


def test_a_native_build_is_kept_per_cpu_instruction_set(install, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wheel built native to an AVX-512 CPU must not be handed to an AVX2 machine sharing the cache."""
    native = ["-DGGML_NATIVE=ON", "-DCMAKE_C_FLAGS=-mno-amx-tile"]
    monkeypatch.setattr(install, "cpu_features", lambda: ["avx2", "avx512f", "avx512_bf16"])
    zen4 = install.wheel_dir(native)
    monkeypatch.setattr(install, "cpu_features", lambda: ["avx2"])
    zen3 = install.wheel_dir(native)
    assert zen4 != zen3 and zen4.parent == zen3.parent
    portable = ["-DGGML_NATIVE=OFF", "-DGGML_AVX2=ON"]
    on_avx2 = install.wheel_dir(portable)
    monkeypatch.setattr(install, "cpu_features", lambda: ["avx2", "avx512f"])
    assert install.wheel_dir(portable) == on_avx2 != zen3  # instruction sets fixed by hand: the CPU does not matter


def test_this_cpus_features_are_read(install) -> None:
    if not Path("/proc/cpuinfo").exists():
        pytest.skip("no /proc/cpuinfo here")
    features = install.cpu_features()
    assert features == sorted(set(features)) and features


def test_a_failed_download_is_tried_again(install, tmp_path: Path) -> None:
    """pip failing once (a download cut off halfway) does not end the install; failing every time does."""
    marker = tmp_path / "tried"
    fails_once = ["python3", "-c", f"import pathlib, sys; m = pathlib.Path({str(marker)!r}); sys.exit(0 if m.exists() else m.touch() or 1)"]
    install.run(fails_once, attempts=2)
    assert marker.exists()
    with pytest.raises(SystemExit) as ended:
        install.run(["python3", "-c", "import sys; sys.exit(3)"], attempts=2)
    assert ended.value.code == 3
