"""Converting a GGUF file into a transformers checkpoint once, and reusing it on later loads.

transformers dequantises every tensor of a GGUF on each ``from_pretrained`` (10–60 s on a
laptop CPU). We do it once, save the dequantised weights and tokenizer as a normal
checkpoint under the cache folder, and load that afterwards (under a second).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from bench.models.sources import ModelSource
from bench.paths import cache_dir


def converted_dir(source: ModelSource) -> Path:
    return cache_dir() / "converted" / (source.cache_key or Path(source.location).stem)


def ensure_converted(source: ModelSource) -> Path:
    """Return a folder holding the checkpoint converted from ``source`` (a GGUF), converting it if needed."""
    target = converted_dir(source)
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(source.location)
    # transformers draws its own per-tensor progress bar here; the run's progress bar is enough.
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The loaded weights are plain dequantised tensors; drop the GGUF marker so they can be saved.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "SOURCE.txt").write_text(f"converted from {gguf}\n", encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    staging.replace(target)
    return target
