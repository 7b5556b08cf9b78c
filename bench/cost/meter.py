"""The meter around backend calls: wall and CPU time, peak memory, and energy measured where the hardware allows.

Energy is read per component and every figure says how it was obtained:

- ``nvml``: the GPU's own energy counter (NVIDIA Volta and newer), through ``pynvml``;
- ``rapl``: CPU package and DRAM counters under ``/sys/class/powercap`` (whole sockets, so other
  processes on the machine are counted too), where the files are readable;
- ``tdp-estimate``: nothing readable, so the CPU's TDP (codecarbon's table, copied to
  ``configs/hardware/cpu_power.csv``) times the share of the machine's CPU time this process used.
  An estimate, never a measurement.
"""

from __future__ import annotations

import csv
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import psutil

from bench.environment import cpu_model
from bench.paths import builtin_dir

RAPL_ROOT = Path("/sys/class/powercap")
RSS_INTERVAL_S = 0.05
WATTS_PER_THREAD = 4.0  # codecarbon's fallback for a CPU missing from its table
MEASURED = ("nvml", "rapl")


# ---------------------------------------------------------------- CPU power (for the estimate)
@dataclass(frozen=True)
class CpuPower:
    model: str
    tdp_watts: float
    source: str


_NUMBER = re.compile(r"\d+(\.\d+)?")


def _words(name: str) -> list[str]:
    name = re.sub(r"\((r|tm)\)|\bcpu\b|\bprocessor\b|@.*$|\d+-core", " ", name.lower())
    return re.findall(r"[a-z0-9]+", name)


@lru_cache(maxsize=4)
def _tdp_table(path: Path) -> dict[tuple[str, ...], tuple[str, float]]:
    with path.open(encoding="utf-8") as handle:
        rows = csv.DictReader(line for line in handle if not line.startswith("#"))
        return {tuple(_words(row["Name"])): (row["Name"], float(row["TDP"])) for row in rows if _NUMBER.fullmatch(row["TDP"] or "")}


def threads() -> int:
    """Logical CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return psutil.cpu_count() or 1


def cpu_power(model: str | None = None, table: Path | None = None) -> CpuPower:
    """TDP of ``model`` (this machine's CPU by default): exact name, else the longest table name all of whose words it contains."""
    model = model or cpu_model()
    entries = _tdp_table(table or builtin_dir("configs") / "hardware" / "cpu_power.csv")
    words = _words(model)
    found = entries.get(tuple(words))
    if found is None:
        present = set(words)
        candidates = [(len(key), value) for key, value in entries.items() if set(key) <= present and any(ch.isdigit() for ch in "".join(key))]
        found = max(candidates)[1] if candidates else None
    if found is not None:
        return CpuPower(model, found[1], f"TDP of {found[0]} from cpu_power.csv")
    count = threads()
    return CpuPower(model, WATTS_PER_THREAD * count, f"'{model}' not in cpu_power.csv: {WATTS_PER_THREAD:g} W per thread × {count} threads")


# ---------------------------------------------------------------- counters
@dataclass(frozen=True)
class RaplZone:
    component: str  # cpu | dram
    path: Path
    max_uj: int

    def read(self) -> int:
        return int(self.path.read_text())


def rapl_delta_uj(start: int, end: int, max_uj: int) -> int:
    """Microjoules between two readings of a counter that wraps at ``max_uj``."""
    return end - start if end >= start else end + max_uj - start


def rapl_zones(root: Path = RAPL_ROOT) -> list[RaplZone]:
    """Readable RAPL package and DRAM zones (others, such as core and psys, overlap them)."""
    zones = []
    for folder in sorted(root.glob("*-rapl:*")):
        try:
            name = (folder / "name").read_text().strip()
            component = "cpu" if name.startswith("package") else "dram" if name == "dram" else None
            if component is None:
                continue
            zone = RaplZone(component, folder / "energy_uj", int((folder / "max_energy_range_uj").read_text()))
            zone.read()
        except (OSError, ValueError):  # typically root-only since 2020 (CVE-2020-8694)
            continue
        zones.append(zone)
    return zones


class NvmlEnergy:
    """The GPU's cumulative energy counter (millijoules since the driver loaded)."""

    def __init__(self, device: str) -> None:
        import pynvml
        import torch

        pynvml.nvmlInit()
        index = torch.device(device).index or 0
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        self._nvml = pynvml
        self.handle = pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}") if uuid else pynvml.nvmlDeviceGetHandleByIndex(index)
        self.read()

    def read(self) -> float:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1000.0


def nvml_energy(device: str) -> NvmlEnergy | None:
    if not device.startswith("cuda"):
        return None
    try:
        return NvmlEnergy(device)
    except Exception:  # no pynvml, an old GPU or driver: fall back to the estimate for the CPU only
        return None


# ---------------------------------------------------------------- the meter
@dataclass
class Reading:
    """What one metered call cost; filled when its ``with`` block ends."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0
    cpu_utilisation: float = 0.0  # share of this process's logical CPUs kept busy
    energy_j: dict[str, float] = field(default_factory=dict)
    energy_method: dict[str, str] = field(default_factory=dict)
    peak_rss_bytes: int = 0
    peak_vram_bytes: int | None = None


class Meter:
    """Measures backend calls; one per loaded model. Close it (or use it as a context manager) to stop its RSS sampler."""

    def __init__(self, device: str = "cpu", cpu: CpuPower | None = None, rapl_root: Path = RAPL_ROOT) -> None:
        self.device = device
        self.cpu = cpu or cpu_power()
        self.threads = threads()
        self.rapl = rapl_zones(rapl_root)
        self.gpu = nvml_energy(device)
        self._process = psutil.Process()
        self._peak_rss = 0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    @property
    def methods(self) -> dict[str, str]:
        """How each component's energy is obtained."""
        found = {zone.component for zone in self.rapl}
        methods = {"cpu": "rapl" if "cpu" in found else "tdp-estimate"}
        if "dram" in found:
            methods["dram"] = "rapl"
        if self.gpu is not None:
            methods["gpu"] = "nvml"
        return methods

    def _sample(self) -> None:
        while not self._stop.wait(RSS_INTERVAL_S):
            self._peak_rss = max(self._peak_rss, self._process.memory_info().rss)

    def _counters(self) -> tuple[list[int], float | None]:
        return [zone.read() for zone in self.rapl], self.gpu.read() if self.gpu is not None else None

    @contextmanager
    def measure(self) -> Iterator[Reading]:
        if self._sampler is None:
            self._sampler = threading.Thread(target=self._sample, name="accessbench-rss", daemon=True)
            self._sampler.start()
        cuda = self.device.startswith("cuda")
        if cuda:
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        reading = Reading()
        self._peak_rss = self._process.memory_info().rss
        rapl_before, gpu_before = self._counters()
        cpu_start, start = time.process_time(), time.perf_counter()
        yield reading
        if cuda:
            torch.cuda.synchronize(self.device)
            reading.peak_vram_bytes = int(torch.cuda.max_memory_allocated(self.device))
        reading.seconds = time.perf_counter() - start
        reading.cpu_seconds = time.process_time() - cpu_start
        rapl_after, gpu_after = self._counters()
        reading.peak_rss_bytes = max(self._peak_rss, self._process.memory_info().rss)
        reading.cpu_utilisation = min(1.0, reading.cpu_seconds / (reading.seconds * self.threads)) if reading.seconds > 0 else 0.0
        reading.energy_method = self.methods
        for zone, first, last in zip(self.rapl, rapl_before, rapl_after):
            reading.energy_j[zone.component] = reading.energy_j.get(zone.component, 0.0) + rapl_delta_uj(first, last, zone.max_uj) / 1e6
        if gpu_before is not None and gpu_after is not None:
            reading.energy_j["gpu"] = gpu_after - gpu_before
        if reading.energy_method["cpu"] == "tdp-estimate":
            reading.energy_j["cpu"] = self.cpu.tdp_watts * reading.cpu_seconds / self.threads

    def close(self) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()
            self._sampler = None

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- sharing one reading among its samples
def _shares(total: float, weights: Sequence[int]) -> list[float]:
    whole = sum(weights)
    return [total * w / whole for w in weights] if whole > 0 else [total / len(weights)] * len(weights)


def split_reading(
    reading: Reading,
    input_tokens: Sequence[int],
    output_tokens: Sequence[int],
    ttft: Sequence[float | None] | None = None,
    decode: Sequence[float | None] | None = None,
) -> list[dict[str, Any]]:
    """Per-sample meter records for one metered call that served len(input_tokens) requests.

    The call's wall time is split into prefill and decode in the ratio of the requests' own
    time to first token and decode time (generation), or is all prefill (log-likelihood and
    tokenisation). Prefill seconds are shared in proportion to input tokens, decode seconds in
    proportion to output tokens; CPU time and energy follow each sample's share of the wall time.
    """
    n = len(input_tokens)
    decode_fraction = 0.0
    if ttft is not None and decode is not None and sum(output_tokens) > 0:
        pairs = [(t, d) for t, d in zip(ttft, decode) if t is not None and d is not None]
        latency = sum(t + d for t, d in pairs)
        decode_fraction = sum(d for _, d in pairs) / latency if latency > 0 else 0.0
    prefill = _shares(reading.seconds * (1 - decode_fraction), input_tokens)
    decode_s = _shares(reading.seconds * decode_fraction, output_tokens) if decode_fraction else [0.0] * n
    records = []
    for i in range(n):
        share = (prefill[i] + decode_s[i]) / reading.seconds if reading.seconds > 0 else 1 / n
        record: dict[str, Any] = {
            "prefill_s": prefill[i],
            "decode_s": decode_s[i],
            "cpu_s": reading.cpu_seconds * share,
            "cpu_utilisation": reading.cpu_utilisation,
            "energy_j": {component: joules * share for component, joules in reading.energy_j.items()},
            "energy_method": dict(reading.energy_method),
            "peak_rss_mb": round(reading.peak_rss_bytes / 2**20, 1),
            "peak_vram_mb": None if reading.peak_vram_bytes is None else round(reading.peak_vram_bytes / 2**20, 1),
        }
        if ttft is not None:
            record["ttft_s"] = ttft[i]
        records.append(record)
    return records
