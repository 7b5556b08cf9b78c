"""Choosing and loading a backend for a model: transformers, or llama.cpp for GGUF files on a CPU."""

from __future__ import annotations

from typing import Literal

from bench.config import BatchSize, ModelConfig
from bench.models.base import Backend
from bench.models.llamacpp import llama_cpp_installed
from bench.models.native_probe import probe_llama_cpp
from bench.models.sources import ModelSource, resolve

BackendName = Literal["hf", "llamacpp"]


def choose_backend(spec: ModelConfig, notes: list[str] | None = None) -> BackendName:
    """``backend: auto`` → llama.cpp for a GGUF model on a CPU when llama-cpp-python is installed
    and its build passes the probe on this machine (``bench.models.native_probe``), else transformers.

    When the probe fails, ``notes`` gets one line saying why and how to fix the build.
    """
    if spec.backend != "auto":
        return spec.backend
    if spec.device.startswith("cuda") or spec.quantization or spec.device_map:
        return "hf"
    if not llama_cpp_installed():
        return "hf"
    import torch

    on_cpu = spec.device == "cpu" or (spec.device == "auto" and not torch.cuda.is_available())
    if not (on_cpu and resolve(spec.ref, spec.revision).kind == "gguf"):
        return "hf"
    probe = probe_llama_cpp()
    if not probe.ok:
        if notes is not None:
            notes.append(f"{spec.ref} runs on transformers, not llama.cpp: {probe.reason}")
        return "hf"
    return "llamacpp"


def with_backend(spec: ModelConfig, notes: list[str] | None = None) -> ModelConfig:
    """The same model with ``auto`` replaced by the backend that will run it (so run ids name it)."""
    return spec if spec.backend != "auto" else spec.model_copy(update={"backend": choose_backend(spec, notes)})


def preflight(spec: ModelConfig) -> ModelSource:
    """Check reference, device and memory for the model's backend before anything is loaded."""
    if choose_backend(spec) == "llamacpp":
        from bench.models.llamacpp import preflight as llamacpp_preflight

        return llamacpp_preflight(spec)[0]
    from bench.models.hf import preflight as hf_preflight

    return hf_preflight(spec)[0]


def load_backend(spec: ModelConfig, batch_size: BatchSize = "auto", seed: int = 1234) -> Backend:
    if choose_backend(spec) == "llamacpp":
        from bench.models.llamacpp import LlamaCppBackend

        return LlamaCppBackend(spec, batch_size, seed)
    from bench.models.hf import HFBackend

    return HFBackend(spec, batch_size, seed)
