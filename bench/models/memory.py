"""Estimating a model's memory before loading it, and refusing loads that cannot fit."""

from __future__ import annotations

import re
from dataclasses import dataclass

import psutil

from bench.errors import UserError

BYTES_PER_PARAMETER = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "8bit": 1.0, "4bit": 0.55}
# Weights are most of it; activations, KV cache, logits and the runtime add roughly this much.
OVERHEAD_FACTOR = 1.2
OVERHEAD_BYTES = 300 * 2**20

_SIZE = re.compile(r"^\s*([\d.]+)\s*([KMGT]?i?B?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}


def parse_size(text: str | int) -> int:
    """'10GB' → 10e9 bytes, '512MiB' → 512·2²⁰; an int is taken as bytes."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise UserError(f"memory size '{text}' is not understood; write it like 8GB, 512MiB or 24GiB")
    unit = match.group(2).upper().removesuffix("B")
    return int(float(match.group(1)) * _UNITS[unit])


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


@dataclass(frozen=True)
class MemoryEstimate:
    parameters: int
    precision: str  # a dtype name, or '8bit'/'4bit'

    @property
    def bytes_needed(self) -> int:
        return int(self.parameters * BYTES_PER_PARAMETER[self.precision] * OVERHEAD_FACTOR + OVERHEAD_BYTES)

    def with_precision(self, precision: str) -> MemoryEstimate:
        return MemoryEstimate(self.parameters, precision)


def available_bytes(device: str, max_memory: dict[str, str] | None, offload: bool) -> tuple[int, str]:
    """Free memory the model may use on ``device`` (plus CPU RAM when offloading), and its name."""
    limits = {str(key): parse_size(value) for key, value in (max_memory or {}).items()}
    ram = psutil.virtual_memory().available
    ram = min(ram, limits.get("cpu", ram))
    if not device.startswith("cuda"):
        return ram, "RAM"
    import torch

    index = int(device.split(":", 1)[1]) if ":" in device else 0
    free_vram = torch.cuda.mem_get_info(index)[0]
    free_vram = min(free_vram, limits.get(str(index), limits.get(f"cuda:{index}", free_vram)))
    if offload:
        return free_vram + ram, "VRAM + RAM (offload)"
    return free_vram, f"VRAM on {torch.cuda.get_device_name(index)}"


def check_fits_bytes(ref: str, needed: int, device: str, max_memory: dict[str, str] | None) -> None:
    """Raise a one-line UserError when ``needed`` bytes do not fit (for backends that know their bytes, not a dtype)."""
    available, where = available_bytes(device, max_memory, offload=False)
    if needed > available:
        raise UserError(
            f"model {ref} needs about {gib(needed)} but only {gib(available)} of {where} is free; choose a smaller model or a shorter context (max_length)"
        )


def check_fits(ref: str, estimate: MemoryEstimate, device: str, max_memory: dict[str, str] | None, offload: bool) -> None:
    """Raise a one-line UserError naming a setting that would fit, when the model cannot fit."""
    available, where = available_bytes(device, max_memory, offload)
    needed = estimate.bytes_needed
    if needed <= available:
        return
    suggestions = []
    on_gpu = device.startswith("cuda")
    for precision, flag in (("bfloat16", "--dtype bfloat16"), ("4bit", "--quantization 4bit (needs bitsandbytes)")):
        if precision == "4bit" and not on_gpu:
            continue
        smaller = estimate.with_precision(precision)
        if BYTES_PER_PARAMETER[precision] < BYTES_PER_PARAMETER[estimate.precision] and smaller.bytes_needed <= available:
            suggestions.append(f"{flag} (about {gib(smaller.bytes_needed)})")
    if on_gpu and not offload:
        suggestions.append("device_map: auto in the model's config to offload layers to RAM")
    fix = "try " + " or ".join(suggestions) if suggestions else "choose a smaller model or a machine with more memory"
    raise UserError(
        f"model {ref} needs about {gib(needed)} ({estimate.parameters / 1e6:,.0f}M parameters at {estimate.precision}) "
        f"but only {gib(available)} of {where} is free; {fix}"
    )
