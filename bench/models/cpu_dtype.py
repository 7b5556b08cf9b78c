"""What ``dtype: auto`` means for the transformers backend on a CPU: bfloat16 only where it is native and harmless.

bfloat16 runs 2–2.7× faster than float32 on CPUs with native bfloat16 arithmetic (AVX512-BF16,
AMX), and slower elsewhere (it is emulated). Whether a model's scores survive it is checked once
per model: the log-likelihoods of a few fixed sentences (several scripts) in bfloat16 must stay
within ``TOLERANCE_NATS`` of float32. The verdict is cached under ``cache_dir()/dtype-checks/``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.paths import cache_dir

NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
TOLERANCE_NATS = 0.1
CHECK_VERSION = 1  # bump when the texts or the rule change, so older verdicts are not reused
CHECK_TEXTS = (
    "Wash your hands with soap and water before you eat.",
    "Wanke hannuwanka da sabulu da ruwa kafin ka ci abinci.",
    "ከመመገብዎ በፊት እጅዎን በሳሙና እና በውሃ ይታጠቡ።",
    "Osha mikono yako kwa sabuni na maji kabla ya kula.",
    "မစားမီ လက်ကို ဆပ်ပြာနှင့် ရေဖြင့် ဆေးပါ။",
)


@dataclass(frozen=True)
class DtypeChoice:
    """The dtype ``auto`` resolved to, and why (recorded in the model info of the manifest and summaries)."""

    dtype: str
    reason: str


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo cannot be read, e.g. macOS)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def verdict_path(model_key: str) -> Path:
    digest = hashlib.sha256(f"{model_key}|v{CHECK_VERSION}".encode()).hexdigest()[:16]
    return cache_dir() / "dtype-checks" / f"bf16-{digest}.json"


def auto_cpu_dtype(model_key: str, measure: Callable[[str], list[float]], flags: Iterable[str] | None = None) -> DtypeChoice:
    """float32, or bfloat16 where the CPU has it natively and ``measure`` shows the model's log-likelihoods agree.

    ``measure(dtype_name)`` returns the log-likelihood of each of CHECK_TEXTS with the model in that
    dtype; it is called only when no verdict for ``model_key`` is cached.
    """
    native = sorted(NATIVE_BF16_FLAGS & set(cpu_flags() if flags is None else flags))
    if not native:
        return DtypeChoice("float32", "this CPU has no native bfloat16 (avx512_bf16 or amx_bf16), where bfloat16 is emulated and slower")
    path = verdict_path(model_key)
    try:
        verdict = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        reference, reduced = measure("float32"), measure("bfloat16")
        worst = max(abs(a - b) for a, b in zip(reference, reduced, strict=True))
        verdict = {"model": model_key, "max_difference_nats": worst, "tolerance_nats": TOLERANCE_NATS, "texts": len(CHECK_TEXTS), "version": CHECK_VERSION}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(verdict, indent=1) + "\n", encoding="utf-8")
    worst = float(verdict["max_difference_nats"])
    measured = f"log-likelihoods of {len(CHECK_TEXTS)} check sentences differ from float32 by at most {worst:.3f} nats (checked once; {path})"
    if worst <= TOLERANCE_NATS:
        return DtypeChoice("bfloat16", f"native bfloat16 on this CPU ({', '.join(native)}) and {measured}")
    return DtypeChoice("float32", f"this CPU has native bfloat16, but the model's {measured}, over the {TOLERANCE_NATS} allowed")
