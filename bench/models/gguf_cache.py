"""Converting a GGUF file into a transformers checkpoint once, and reusing it on later loads.

transformers dequantises every tensor of a GGUF on each ``from_pretrained`` (10–60 s on a
laptop CPU). We do it once, save the dequantised weights and tokenizer as a normal
checkpoint under the cache folder, and load that afterwards (under a second).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.models.gguf_header import read_header
from bench.models.sources import ModelSource
from bench.paths import cache_dir

# Bump when what ensure_converted writes changes, so a checkpoint converted by older code is not reused.
# 2: the tokenizer gets the pre-tokenizer the GGUF declares (see _match_declared_pre_tokenizer).
CONVERSION_VERSION = 2

# `tokenizer.ggml.pre` values for which llama.cpp cuts every \p{N} character into its own piece before
# the GPT-2 split (llama-vocab.cpp: LLAMA_VOCAB_PRE_TYPE_STARCODER, REFACT, COMMAND_R, SMOLLM, CODESHELL,
# EXAONE, MINERVA, MELLUM2), as the models' own tokenizer.json does with Digits(individual_digits=True).
# transformers' GGUF loader does not know these names and falls back to plain GPT-2 byte-level, which
# lets a space join the digits after it (" ၂" -> "Ġá"+..., instead of "Ġ"+"á"+...).
_DIGIT_SPLITTING_PRE = frozenset({"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b", "mellum2"})


def converted_dir(source: ModelSource) -> Path:
    key = source.cache_key or Path(source.location).stem
    return cache_dir() / "converted" / f"{key}-c{CONVERSION_VERSION}"


def _match_declared_pre_tokenizer(tokenizer: Any, gguf: Path) -> None:
    """Give ``tokenizer`` the pre-tokenizer the GGUF's ``tokenizer.ggml.pre`` names, where transformers picks another.

    Both backends then cut text the way llama.cpp (and the model's original tokenizer) does, so they
    count the same tokens.
    """
    from tokenizers import pre_tokenizers

    header = read_header(gguf)
    if header.string("tokenizer.ggml.model") != "gpt2":
        return
    if header.string("tokenizer.ggml.pre") in _DIGIT_SPLITTING_PRE:
        tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
            ]
        )


@contextlib.contextmanager
def _parsed_once(gguf: Path) -> Iterator[None]:
    """Within the block, gguf-py's ``GGUFReader`` of ``gguf`` is parsed once and shared.

    transformers parses the file afresh for the config, the tokenizer and the weights, and each
    parse decodes every vocabulary entry (5 s for SmolLM2's 49k, 14 s for Gemma-3's 262k on a
    laptop CPU). The reader only reads (a read-only memory map), so one can serve all three.
    """
    import gguf as gguf_py

    original = gguf_py.GGUFReader
    shared: list[Any] = []

    def reader(path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> Any:
        if Path(path) != gguf or args or kwargs:
            return original(path, *args, **kwargs)
        if not shared:
            shared.append(original(path))
        return shared[0]

    gguf_py.GGUFReader = reader  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        gguf_py.GGUFReader = original  # type: ignore[misc]


def ensure_converted(source: ModelSource) -> Path:
    """Return a folder holding the checkpoint converted from ``source`` (a GGUF), converting it if needed."""
    target = converted_dir(source)
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(source.location)
    # transformers draws its own per-tensor progress bar here; the run's progress bar is enough.
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink), _parsed_once(gguf):
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    _match_declared_pre_tokenizer(tokenizer, gguf)
    # The loaded weights are plain dequantised tensors; drop the GGUF marker so they can be saved.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "SOURCE.txt").write_text(f"converted from {gguf}\nconversion version {CONVERSION_VERSION}\n", encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    staging.replace(target)
    return target
