"""The backend registry: which backends exist, what each needs, which options it reads, and choosing one.

A backend is one module with a class that answers the protocol in ``bench.models.base`` (its
constructor takes ``(spec, batch_size, seed)``) and a ``preflight(spec) -> Preflight`` function
that checks a model before anything is loaded. It is registered with one line here (or, from
another package, with ``register_backend`` or an ``accessbench.backends`` entry point). Modules are
imported only when their backend is used, so a backend whose optional dependency is missing fails
with one line naming the extra to install, and ``accessbench`` starts without it.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from bench.config import BatchSize, ModelConfig
from bench.errors import UserError, missing_dependency
from bench.models.base import Backend, Preflight
from bench.models.native_probe import probe_llama_cpp
from bench.models.sources import resolve

# ModelConfig fields that only some backends read; the others apply to every backend.
BACKEND_SPECIFIC_OPTIONS = ("dtype", "trust_remote_code", "device_map", "max_memory", "quantization")


@dataclass(frozen=True)
class BackendEntry:
    """One backend: where its code lives and what it needs."""

    name: str
    module: str  # imported on first use
    cls: str  # the class answering the protocol, in ``module``
    requires: tuple[str, ...] = ()  # importable modules of its optional dependencies
    extra: str | None = None  # the extra that installs them (`python install.py EXTRA`)
    options: frozenset[str] = frozenset()  # the BACKEND_SPECIFIC_OPTIONS it reads
    # A pydantic model in ``module`` for the backend's own keys (flat in a model entry); its
    # module must import cheaply, since configs are validated with it.
    options_model: str | None = None
    description: str = ""

    def missing(self) -> list[str]:
        return [module for module in self.requires if importlib.util.find_spec(module) is None]

    def installed(self) -> bool:
        return not self.missing()

    def own_options(self) -> type[BaseModel] | None:
        if self.options_model is None:
            return None
        model: type[BaseModel] = getattr(importlib.import_module(self.module), self.options_model)
        return model

    def module_object(self) -> Any:
        missing = self.missing()
        if missing:
            raise missing_dependency(f"backend {self.name}", missing, self.extra)
        return importlib.import_module(self.module)


_BACKENDS: dict[str, BackendEntry] = {}


def register_backend(entry: BackendEntry) -> BackendEntry:
    """Make a backend available to configs as ``backend: <name>`` (a later registration replaces an earlier one)."""
    if entry.name == "auto":
        raise ValueError("'auto' is not a backend name: it means choose one")
    _BACKENDS[entry.name] = entry
    return entry


register_backend(
    BackendEntry(
        "hf",
        "bench.models.hf",
        "HFBackend",
        options=frozenset(BACKEND_SPECIFIC_OPTIONS),
        description="transformers: Hub ids, checkpoints, GGUF dequantised; CPU or GPU",
    )
)
register_backend(
    BackendEntry(
        "llamacpp",
        "bench.models.llamacpp",
        "LlamaCppBackend",
        requires=("llama_cpp",),
        extra="llamacpp",
        description="llama.cpp: GGUF files natively",
    )
)
register_backend(
    BackendEntry(
        "openai",
        "bench.models.openai",
        "OpenAIBackend",
        options_model="OpenAIOptions",
        description="any OpenAI-compatible endpoint: llama.cpp's server, Ollama, vLLM, paid APIs",
    )
)


def _load_entry_points() -> None:
    """Backends that other installed packages declare under the ``accessbench.backends`` entry point group."""
    for point in entry_points(group="accessbench.backends"):
        entry = point.load()
        if isinstance(entry, BackendEntry) and entry.name not in _BACKENDS:
            register_backend(entry)


def backends() -> dict[str, BackendEntry]:
    """Every registered backend, by name."""
    _load_entry_points()
    return dict(_BACKENDS)


def backend_entry(name: str) -> BackendEntry:
    known = backends()
    if name not in known:
        from bench.errors import did_you_mean

        raise UserError(f"unknown backend '{name}'{did_you_mean(name, [*known, 'auto'])}; known: auto, {', '.join(sorted(known))}")
    return known[name]


def claim_options(backend: str, keys: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The backend whose options model declares ``keys`` (``auto`` becomes it) and those keys, validated.

    Keys no backend declares are left unclaimed (the config schema reports them as unknown).
    """
    owners = {name: model for name, entry in backends().items() if (model := entry.own_options()) is not None}
    claimed = {key: value for key, value in keys.items() if any(key in model.model_fields for model in owners.values())}
    if not claimed:
        return backend, {}
    fitting = [name for name, model in owners.items() if set(claimed) <= set(model.model_fields)]
    if backend == "auto" and len(fitting) == 1:
        backend = fitting[0]
    if backend not in fitting:
        key = next(key for key in claimed if backend not in owners or key not in owners[backend].model_fields)
        users = sorted(name for name, model in owners.items() if key in model.model_fields)
        raise ValueError(f"'{key}' is an option of backend {' or '.join(users)}, not of backend {backend}; set backend: {users[0]}")
    try:
        owners[backend].model_validate(claimed)
    except ValidationError as error:
        problem = error.errors()[0]
        raise ValueError(f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}") from None
    return backend, claimed


def backend_options[Options: BaseModel](spec: ModelConfig, model: type[Options]) -> Options:
    """A model entry's backend options, typed by the backend's options model."""
    return model.model_validate(spec.options)


def options_outside_results(spec: ModelConfig) -> set[str]:
    """The backend options set in ``spec`` that change how a run talks to its model but not what it measures
    (declared with ``json_schema_extra={"affects_results": False}``); they are left out of the run id."""
    known = backends()
    model = known[spec.backend].own_options() if spec.backend in known else None
    if model is None:
        return set()
    return {
        name for name, info in model.model_fields.items() if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("affects_results") is False
    }


def _unused_options(spec: ModelConfig, entry: BackendEntry) -> list[str]:
    return [option for option in BACKEND_SPECIFIC_OPTIONS if option in spec.model_fields_set and option not in entry.options]


def check_options(spec: ModelConfig, backend: str) -> None:
    """An option the backend does not read is an error naming the backends that read it."""
    entry = backend_entry(backend)
    for option in _unused_options(spec, entry):
        users = sorted(name for name, other in backends().items() if option in other.options)
        raise UserError(f"model {spec.ref}: backend {backend} does not use '{option}'; remove it, or use backend: {' or '.join(users)}")


def choose_backend(spec: ModelConfig, notes: list[str] | None = None) -> str:
    """``backend: auto`` → llama.cpp for a GGUF model on a CPU when llama-cpp-python is installed,
    no transformers-only option is set, and its build passes the probe on this machine
    (``bench.models.native_probe``); else transformers.

    When llama.cpp is not installed or its probe fails, ``notes`` gets one line saying why and what to do.
    """
    if spec.backend != "auto":
        return spec.backend
    llamacpp = backend_entry("llamacpp")
    if spec.device.startswith("cuda") or _unused_options(spec, llamacpp):
        return "hf"
    import torch

    on_cpu = spec.device == "cpu" or (spec.device == "auto" and not torch.cuda.is_available())
    if not (on_cpu and resolve(spec.ref, spec.revision).kind == "gguf"):
        return "hf"
    if not llamacpp.installed():
        if notes is not None:
            notes.append(
                f"{spec.ref} runs on transformers, after a one-off conversion of its GGUF; llama.cpp would run the file as it is "
                f"(`python install.py {llamacpp.extra}` in the accessbench checkout)"
            )
        return "hf"
    probe = probe_llama_cpp()
    if not probe.ok:
        if notes is not None:
            notes.append(f"{spec.ref} runs on transformers, not llama.cpp: {probe.reason}")
        return "hf"
    return "llamacpp"


def with_backend(spec: ModelConfig, notes: list[str] | None = None) -> ModelConfig:
    """The same model with ``auto`` replaced by the backend that will run it (so run ids name it)."""
    resolved = spec if spec.backend != "auto" else spec.model_copy(update={"backend": choose_backend(spec, notes)})
    check_options(resolved, resolved.backend)
    return resolved


def preflight(spec: ModelConfig) -> Preflight:
    """Check reference, device and memory for the model's backend before anything is loaded."""
    check: Callable[[ModelConfig], Preflight] = backend_entry(choose_backend(spec)).module_object().preflight
    return check(spec)


def load_backend(spec: ModelConfig, batch_size: BatchSize = "auto", seed: int = 1234) -> Backend:
    entry = backend_entry(choose_backend(spec))
    backend: Backend = getattr(entry.module_object(), entry.cls)(spec, batch_size, seed)
    return backend
