"""Backends compute with the physical cores available to the process, or fewer where torch was told fewer, and say how many."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from bench.config import ModelConfig
from bench.models.hf import HFBackend
from bench.models.threads import physical_cores


@pytest.fixture
def torch_threads() -> Iterator[int]:
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_transformers_computes_with_the_physical_cores_or_fewer_and_records_it(tiny_model_dir: Path, torch_threads: int) -> None:
    spec = ModelConfig(ref=str(tiny_model_dir), backend="hf", dtype="float32", device="cpu")
    assert HFBackend(spec).info.threads == min(physical_cores(), torch_threads) == torch.get_num_threads()
    torch.set_num_threads(1)  # as OMP_NUM_THREADS=1 or a scheduler that granted one CPU would
    assert HFBackend(spec).info.threads == 1 == torch.get_num_threads()


def test_llama_cpp_computes_with_as_many_threads_as_torch_may_and_records_it(smollm2_ref: str, torch_threads: int) -> None:
    pytest.importorskip("llama_cpp", reason="the test extra installs llama-cpp-python")
    from bench.models.llamacpp import LlamaCppBackend

    torch.set_num_threads(1)
    backend = LlamaCppBackend(ModelConfig(ref=smollm2_ref, backend="llamacpp"))
    try:
        # prefill too: llama-cpp-python's own default for batches is every logical CPU of the machine
        assert backend.info.threads == 1 == backend.llm.context_params.n_threads == backend.llm.context_params.n_threads_batch
    finally:
        backend.close()
