"""The cost arithmetic, in one place (docs/cost.md walks through it with numbers).

From a cell's samples (each carrying its meter record) to its ``cost`` block:

- busy seconds S = prefill seconds P + decode seconds D (summed over samples);
- hardware = S × usd_per_busy_second, i.e. price / (lifetime_years × 365 × hours_per_day × 3600) per second,
  or the hourly rent / 3600;
- electricity = kWh × the country's price per kWh (0 when the profile's price includes it);
  kWh is measured (nvml, rapl) where the meter could, otherwise estimated (tdp-estimate): from the
  profile's idle/busy watts when it has them, else from the CPU's TDP;
- input tokens are charged the prefill part (P / S) of both shares, output tokens the decode part (D / S);
  $ per 1M input tokens = input part / input tokens × 10⁶, and the same for output;
- carbon = kWh × the country's grid intensity; money is converted at the currency's rate per US$.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.cost.apis import ApiPrice, cheapest, prices_as_of, same_model_prices
from bench.cost.meter import MEASURED
from bench.cost.profiles import CostSettings, HardwareProfile
from bench.metrics import text_stats

METHOD_ORDER = ("nvml", "rapl", "tdp-estimate")


@dataclass
class Usage:
    """The metered work of some samples, summed."""

    n_samples: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    cpu_s: float = 0.0
    busy_utilisation_s: float = 0.0  # Σ utilisation × seconds, for the profile-watts estimate
    energy_j: dict[str, float] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)
    peak_rss_mb: float | None = None
    peak_vram_mb: float | None = None
    prefill_rates: list[float] = field(default_factory=list)
    decode_rates: list[float] = field(default_factory=list)
    ttft_s: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.prefill_s + self.decode_s

    def add(self, sample: Mapping[str, Any]) -> None:
        """Add one sample record; one written before the meter existed counts as all prefill, fully busy, unmetered."""
        meter = sample.get("meter") or {"prefill_s": sample.get("seconds", 0.0), "decode_s": 0.0, "cpu_utilisation": 1.0}
        n_in, n_out = int(sample["input_tokens"]), int(sample["output_tokens"])
        prefill, decode = float(meter["prefill_s"]), float(meter["decode_s"])
        if n_out == 0:  # no output tokens to charge: the whole time is the input's
            prefill, decode = prefill + decode, 0.0
        self.n_samples += 1
        self.input_tokens += n_in
        self.output_tokens += n_out
        self.prefill_s += prefill
        self.decode_s += decode
        self.cpu_s += float(meter.get("cpu_s") or 0.0)
        self.busy_utilisation_s += float(meter.get("cpu_utilisation", 1.0)) * (prefill + decode)
        for component, joules in (meter.get("energy_j") or {}).items():
            self.energy_j[component] = self.energy_j.get(component, 0.0) + float(joules)
        for component, method in (meter.get("energy_method") or {}).items():
            known = self.methods.get(component, method)  # mixed methods (a resumed run on other hardware): keep the weaker
            self.methods[component] = max(known, method, key=METHOD_ORDER.index)
        self.peak_rss_mb = _max(self.peak_rss_mb, meter.get("peak_rss_mb"))
        self.peak_vram_mb = _max(self.peak_vram_mb, meter.get("peak_vram_mb"))
        if prefill > 0 and n_in > 0:
            self.prefill_rates.append(n_in / prefill)
        if decode > 0 and n_out > 0:
            self.decode_rates.append(n_out / decode)
        if meter.get("ttft_s") is not None:
            self.ttft_s.append(float(meter["ttft_s"]))


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def usage(samples: Iterable[Mapping[str, Any]]) -> Usage:
    total = Usage()
    for sample in samples:
        total.add(sample)
    return total


def _spread(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p90": None}
    return {"median": float(np.median(values)), "p90": float(np.percentile(values, 90))}


def energy(used: Usage, hardware: HardwareProfile) -> dict[str, Any]:
    """kWh with how it was obtained: measured components where any, else the profile's watts, else the CPU's TDP."""
    components: dict[str, dict[str, Any]] = {name: {"kwh": joules / 3.6e6, "method": used.methods.get(name)} for name, joules in used.energy_j.items()}
    measured = [name for name, part in components.items() if part["method"] in MEASURED]
    if measured or (components and hardware.busy_watts is None):
        methods = sorted({part["method"] for part in components.values() if part["method"]}, key=METHOD_ORDER.index)
        estimated = [name for name, part in components.items() if part["method"] == "tdp-estimate"]
        tdp = "the CPU's TDP (configs/hardware/cpu_power.csv) × this process's share of CPU time"
        source = tdp if not measured else "measured" + (f"; {', '.join(estimated)} from {tdp}" if estimated else "")
        return {"kwh": sum(part["kwh"] for part in components.values()), "method": "+".join(methods), "source": source, "components": components}
    if hardware.busy_watts is not None and hardware.idle_watts is not None:
        joules = hardware.idle_watts * used.seconds + (hardware.busy_watts - hardware.idle_watts) * used.busy_utilisation_s
        source = f"hardware profile {hardware.name}: {hardware.idle_watts:g} W idle to {hardware.busy_watts:g} W busy, by CPU utilisation"
        return {"kwh": joules / 3.6e6, "method": "tdp-estimate", "source": source, "components": {}}
    return {"kwh": None, "method": None, "source": "not metered", "components": {}}


def _split(amount: float, fraction: float, tokens: int) -> float | None:
    return amount * fraction / tokens * 1e6 if tokens > 0 else None


def api_price(model_info: Mapping[str, Any] | None) -> ApiPrice | None:
    """The per-token price a served model's info records (a paid API), or None (priced by hardware and time)."""
    listed = ((model_info or {}).get("endpoint") or {}).get("price")
    if not listed:
        return None
    return ApiPrice(str(listed["api"]), str(listed["api"]), float(listed["input_per_1m"]), float(listed["output_per_1m"]))


def price(used: Usage, settings: CostSettings, api: ApiPrice | None = None) -> dict[str, Any]:
    """Money, energy and carbon of some metered work, per token and in total (money in the settings' currency).

    With ``api`` (a paid endpoint) money is what it charges per token; its hardware and energy are not ours to measure.
    """
    rate = settings.currency.per_usd
    seconds = used.seconds
    power = energy(used, settings.hardware) if api is None else {"kwh": None, "method": None, "source": f"paid API {api.api}: not metered", "components": {}}
    kwh = power["kwh"]
    hardware = settings.hardware.usd_per_busy_second * seconds * rate if api is None else 0.0
    electricity = 0.0 if settings.hardware.electricity_included or kwh is None else kwh * settings.country.usd_per_kwh * rate
    input_part = used.prefill_s / seconds if seconds > 0 else 1.0
    output_part = used.decode_s / seconds if seconds > 0 else 0.0
    tokens = used.input_tokens + used.output_tokens
    carbon = kwh * settings.country.gco2e_per_kwh if kwh is not None and settings.country.gco2e_per_kwh is not None else None

    def per_million(part: float, count: int, listed: float | None) -> dict[str, float | None] | None:
        if count == 0:
            return None
        if listed is not None:
            return {"api": listed * rate, "hardware": None, "electricity": None, "total": listed * rate}
        return {
            "hardware": _split(hardware, part, count),
            "electricity": _split(electricity, part, count),
            "total": _split(hardware + electricity, part, count),
        }

    charged = api.usd(used.input_tokens, used.output_tokens) * rate if api is not None else 0.0

    return {
        **settings.describe(),
        "n_samples": used.n_samples,
        "tokens": {"input": used.input_tokens, "output": used.output_tokens},
        "seconds": {"busy": seconds, "prefill": used.prefill_s, "decode": used.decode_s, "cpu": used.cpu_s},
        "throughput": {
            "prefill_tokens_per_second": {"overall": used.input_tokens / used.prefill_s if used.prefill_s > 0 else None, **_spread(used.prefill_rates)},
            "decode_tokens_per_second": {"overall": used.output_tokens / used.decode_s if used.decode_s > 0 else None, **_spread(used.decode_rates)},
            "ttft_seconds": _spread(used.ttft_s),
        },
        "memory": {"peak_rss_mb": used.peak_rss_mb, "peak_vram_mb": used.peak_vram_mb},
        "energy": power,
        "gco2e": carbon,
        "kwh_per_1m_tokens": kwh / tokens * 1e6 if kwh is not None and tokens else None,
        "gco2e_per_1m_tokens": carbon / tokens * 1e6 if carbon is not None and tokens else None,
        "billing": f"per token, {api.api}" if api is not None else "hardware time and electricity",
        "total": {"hardware": hardware, "electricity": electricity, **({"api": charged} if api is not None else {}), "total": hardware + electricity + charged},
        "per_1m_input_tokens": per_million(input_part, used.input_tokens, api.usd_per_1m_input if api else None),
        "per_1m_output_tokens": per_million(output_part, used.output_tokens, api.usd_per_1m_output if api else None),
        "per_sample": (hardware + electricity + charged) / used.n_samples if used.n_samples else None,
    }


def unit_input_price(cost: Mapping[str, Any]) -> float | None:
    """Price of one input token from a cost block."""
    per_million = cost.get("per_1m_input_tokens")
    return per_million["total"] / 1e6 if per_million and per_million["total"] is not None else None


def language_figures(samples: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Tokens per word, per character and per parallel item (a sample) from a cell's own texts and token counts."""
    tokens = words = chars = reference = n = 0
    for sample in samples:
        values = sample.get("values") or {}
        stats = values if "words" in values else text_stats(sample.get("input") or "")
        tokens += int(values.get("tokens", sample["input_tokens"]))
        words += int(stats["words"])
        chars += int(stats["chars"])
        reference += int(values.get("reference_tokens") or 0)
        n += 1
    return {
        "tokens": tokens,
        "words": words,
        "chars": chars,
        "tokens_per_word": tokens / words if words else None,
        "tokens_per_char": tokens / chars if chars else None,
        "tokens_per_sentence": tokens / n if n else None,
        "premium_vs_reference": tokens / reference if reference else None,
    }


def per_language(figures: Mapping[str, Any], input_price: float | None) -> dict[str, float | None]:
    """$ per 1,000 words and per parallel sentence: the language's tokens at the input-token price."""
    if input_price is None:
        return {"per_1000_words": None, "per_sentence": None}
    per_word, per_sentence = figures.get("tokens_per_word"), figures.get("tokens_per_sentence")
    return {
        "per_1000_words": per_word * 1000 * input_price if per_word is not None else None,
        "per_sentence": per_sentence * input_price if per_sentence is not None else None,
    }


def api_comparison(used: Usage, settings: CostSettings, model_names: Sequence[str]) -> dict[str, Any]:
    """The same token counts priced on the cheapest listing of the same model and on the reference APIs."""
    rate = settings.currency.per_usd

    def row(api: ApiPrice) -> dict[str, Any]:
        return {
            "api": api.api,
            "name": api.name,
            "per_1m_input_tokens": api.usd_per_1m_input * rate,
            "per_1m_output_tokens": api.usd_per_1m_output * rate,
            "cost": api.usd(used.input_tokens, used.output_tokens) * rate,
        }

    same = cheapest(same_model_prices(model_names), used.input_tokens, used.output_tokens)
    return {
        "prices_as_of": prices_as_of(),
        "same_model": row(same) if same is not None else None,
        "reference": [row(api) for api in settings.reference_apis],
    }


def cost_of(samples: Iterable[Mapping[str, Any]], settings: CostSettings, model_info: Mapping[str, Any] | None) -> dict[str, Any]:
    """What some samples of one model cost: per token where its info records a paid API's price, else hardware time
    and electricity. The one pricing function behind summaries, `accessbench cost` and the reports."""
    return price(usage(samples), settings, api_price(model_info))


def cell_cost(
    samples: Sequence[Mapping[str, Any]], settings: CostSettings, model_names: Sequence[str], model_info: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``cost`` block of one cell's summary, derived from its samples alone (so a resumed run gets the same):
    its price, its language's token figures (money per word is priced over all of a model's languages, by
    `accessbench cost`) and the same tokens on paid APIs."""
    cost = cost_of(samples, settings, model_info)
    cost["language"] = {**language_figures(samples), "source": "this cell's samples"}
    cost["apis"] = api_comparison(usage(samples), settings, model_names)
    return cost
