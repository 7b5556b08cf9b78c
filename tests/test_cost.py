"""The cost meter, profiles, price arithmetic, API comparison, the cost report and calibration."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from conftest import assert_backend_ran, run_cli

from bench import results
from bench.config import CostConfig, parse_config
from bench.cost.apis import ApiPrice, cheapest, reference_price, same_model_prices
from bench.cost.meter import Meter, Reading, cpu_power, rapl_delta_uj, rapl_zones, split_reading
from bench.cost.pricing import cell_cost, price, usage
from bench.cost.profiles import CostSettings, Country, Currency, HardwareProfile, find_country, find_currency, load_hardware, resolve_cost
from bench.cost.report import machine_settings
from bench.errors import UserError
from bench.runner import run

# ---------------------------------------------------------------- the meter


def test_split_reading_shares_time_by_tokens_and_energy_by_time() -> None:
    reading = Reading(seconds=10.0, cpu_seconds=16.0, cpu_utilisation=0.8, energy_j={"cpu": 100.0}, energy_method={"cpu": "tdp-estimate"}, peak_rss_bytes=2**30)
    # one generate batch of two requests: 2 s to the first token, 6 s of decoding (the other 2 s are overhead, split alike)
    records = split_reading(reading, [30, 10], [60, 20], ttft=[2.0, 2.0], decode=[6.0, 6.0])
    assert [r["prefill_s"] for r in records] == pytest.approx([1.875, 0.625])  # 10 s × 2/8 = 2.5 s by input tokens 3:1
    assert [r["decode_s"] for r in records] == pytest.approx([5.625, 1.875])  # 10 s × 6/8 = 7.5 s by output tokens 3:1
    assert sum(r["prefill_s"] + r["decode_s"] for r in records) == pytest.approx(10.0)
    assert sum(r["energy_j"]["cpu"] for r in records) == pytest.approx(100.0)
    assert records[0]["energy_j"]["cpu"] == pytest.approx(75.0) and records[0]["cpu_s"] == pytest.approx(12.0)
    assert records[0]["ttft_s"] == 2.0 and records[0]["peak_rss_mb"] == 1024.0 and records[0]["peak_vram_mb"] is None
    # log-likelihood work is all prefill
    scored = split_reading(reading, [5, 15], [0, 0])
    assert [r["prefill_s"] for r in scored] == pytest.approx([2.5, 7.5]) and all(r["decode_s"] == 0 for r in scored)


def test_rates_and_percentiles_over_requests() -> None:
    samples = [
        {"input_tokens": 100, "output_tokens": 10, "meter": {"prefill_s": 1.0, "decode_s": 1.0, "ttft_s": 0.5}},
        {"input_tokens": 100, "output_tokens": 10, "meter": {"prefill_s": 0.5, "decode_s": 2.0, "ttft_s": 1.5}},
        {"input_tokens": 100, "output_tokens": 10, "meter": {"prefill_s": 0.25, "decode_s": 0.5, "ttft_s": 1.0}},
    ]
    used = usage(samples)
    assert used.prefill_rates == [100.0, 200.0, 400.0] and used.decode_rates == [10.0, 5.0, 20.0]
    throughput = price(used, _settings())["throughput"]
    assert throughput["prefill_tokens_per_second"] == {"overall": pytest.approx(300 / 1.75), "median": 200.0, "p90": pytest.approx(360.0)}
    assert throughput["decode_tokens_per_second"]["median"] == 10.0 and throughput["decode_tokens_per_second"]["overall"] == pytest.approx(30 / 3.5)
    assert throughput["ttft_seconds"] == {"median": 1.0, "p90": pytest.approx(1.4)}


def test_rapl_counters_wrap_and_unreadable_zones_are_skipped(tmp_path: Path) -> None:
    assert rapl_delta_uj(900, 100, 1000) == 200
    assert rapl_delta_uj(100, 900, 1000) == 800
    for name, folder, energy in (("package-0", "intel-rapl:0", "5000000"), ("dram", "intel-rapl:0:0", "1000000"), ("core", "intel-rapl:0:1", "7")):
        zone = tmp_path / folder
        zone.mkdir()
        (zone / "name").write_text(name + "\n")
        (zone / "energy_uj").write_text(energy)
        (zone / "max_energy_range_uj").write_text("262143328850")
    locked = tmp_path / "intel-rapl:1"
    locked.mkdir()
    (locked / "name").write_text("package-1")  # no energy_uj readable
    zones = rapl_zones(tmp_path)
    assert [(z.component, z.path.parent.name) for z in zones] == [("cpu", "intel-rapl:0"), ("dram", "intel-rapl:0:0")]
    with Meter("cpu", rapl_root=tmp_path) as meter:
        assert meter.methods == {"cpu": "rapl", "dram": "rapl"}
        with meter.measure() as reading:
            (tmp_path / "intel-rapl:0" / "energy_uj").write_text("7500000")
    assert reading.energy_j == {"cpu": pytest.approx(2.5), "dram": 0.0}
    assert reading.energy_method == {"cpu": "rapl", "dram": "rapl"}


def test_a_gpu_energy_counter_is_measured_and_the_cpu_still_estimated() -> None:
    class FakeNvml:
        joules = 1000.0

        def read(self) -> float:
            FakeNvml.joules += 50.0
            return FakeNvml.joules

    with Meter("cpu") as meter:
        meter.gpu, meter.rapl = FakeNvml(), []
        with meter.measure() as reading:
            pass
    assert reading.energy_method == {"cpu": "tdp-estimate", "gpu": "nvml"} and reading.energy_j["gpu"] == 50.0
    samples = [{"input_tokens": 10, "output_tokens": 0, "meter": split_reading(reading, [10], [0])[0]}]
    cost = cell_cost(samples, _settings(), [])
    assert cost["energy"]["method"] == "nvml+tdp-estimate" and cost["energy"]["source"].startswith("measured; cpu from")
    assert cost["energy"]["kwh"] == pytest.approx((50.0 + reading.energy_j["cpu"]) / 3.6e6)


def test_meter_on_this_machine_is_honest_about_its_energy_method() -> None:
    with Meter("cpu") as meter, meter.measure() as reading:
        sum(i * i for i in range(300_000))
    expected = "rapl" if any(zone.component == "cpu" for zone in rapl_zones()) else "tdp-estimate"
    assert reading.energy_method["cpu"] == expected
    assert reading.seconds > 0 and reading.cpu_seconds > 0 and reading.peak_rss_bytes > 0
    assert reading.energy_j["cpu"] > 0 and 0 < reading.cpu_utilisation <= 1


def test_cpu_tdp_lookup() -> None:
    assert cpu_power("Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz").tdp_watts == 15
    assert cpu_power("AMD Ryzen 7 5800X 8-Core Processor").tdp_watts == 105
    unknown = cpu_power("Some Unknown Chip")
    assert "not in cpu_power.csv" in unknown.source and unknown.tdp_watts > 0


# ---------------------------------------------------------------- prices
LAPTOP = HardwareProfile(name="test-laptop", price_usd=1000, lifetime_years=4, hours_per_day=8, idle_watts=10, busy_watts=50)
NIGERIA = Country("NGA", "Nigeria", "NGN", 0.05, "2024-06", "test", 500.0, "2023", "test")


def _settings(hardware: HardwareProfile = LAPTOP, currency: Currency = Currency("USD", 1.0, "", ""), apis: tuple[ApiPrice, ...] = ()) -> CostSettings:
    return CostSettings(hardware, NIGERIA, currency, apis)


def _sample(n_in: int, n_out: int, prefill: float, decode: float, joules: float, method: str = "tdp-estimate", words: int = 10) -> dict:
    return {
        "doc_id": str(n_in),
        "input": "x",
        "input_tokens": n_in,
        "output_tokens": n_out,
        "values": {"tokens": n_in, "words": words, "chars": 5 * words, "bytes": 5 * words},
        "meter": {
            "prefill_s": prefill,
            "decode_s": decode,
            "cpu_s": prefill + decode,
            "cpu_utilisation": 0.5,
            "energy_j": {"cpu": joules},
            "energy_method": {"cpu": method},
        },
    }


def test_price_arithmetic_against_hand_computed_values() -> None:
    # 1,000 input tokens in 2 s of prefill, 200 output tokens in 8 s of decode, on a $1,000 laptop used 8 h a day for 4 years
    samples = [_sample(600, 120, 1.2, 4.8, 0), _sample(400, 80, 0.8, 3.2, 0)]
    cost = cell_cost(samples, _settings(), ["no-such-model"])
    per_second = 1000 / (4 * 365 * 8 * 3600)  # $2.3782e-5 per busy second
    hardware = per_second * 10
    kwh = (10 * 10 + (50 - 10) * 0.5 * 10) / 3.6e6  # idle 10 W + 40 W × 50 % utilisation, for 10 s = 300 J
    assert cost["energy"]["method"] == "tdp-estimate" and "hardware profile" in cost["energy"]["source"]
    assert cost["energy"]["kwh"] == pytest.approx(kwh)
    assert cost["total"]["hardware"] == pytest.approx(hardware)
    assert cost["total"]["electricity"] == pytest.approx(kwh * 0.05)
    assert cost["per_1m_input_tokens"]["hardware"] == pytest.approx(hardware * 0.2 / 1000 * 1e6)  # prefill is 2 of 10 s
    assert cost["per_1m_output_tokens"]["total"] == pytest.approx((hardware + kwh * 0.05) * 0.8 / 200 * 1e6)
    assert cost["gco2e"] == pytest.approx(kwh * 500) and cost["kwh_per_1m_tokens"] == pytest.approx(kwh / 1200 * 1e6)
    assert cost["per_sample"] == pytest.approx((hardware + kwh * 0.05) / 2)
    language = cost["language"]
    assert language["tokens_per_word"] == pytest.approx(50.0) and language["tokens_per_sentence"] == 500
    assert "per_1000_words" not in language  # money per word has one meaning: priced over all of a model's languages (`accessbench cost`)
    assert_consistent(cost)


def test_measured_energy_wins_and_currency_converts() -> None:
    samples = [_sample(1000, 0, 2.0, 0.0, 7200.0, method="rapl")]  # 7,200 J = 2 Wh measured
    cost = cell_cost(samples, _settings(currency=Currency("NGN", 1600.0, "", "")), [])
    assert cost["energy"] == {
        "kwh": pytest.approx(0.002),
        "method": "rapl",
        "source": "measured",
        "components": {"cpu": {"kwh": pytest.approx(0.002), "method": "rapl"}},
    }
    assert cost["total"]["electricity"] == pytest.approx(0.002 * 0.05 * 1600)
    assert cost["per_1m_output_tokens"] is None and cost["currency"] == "NGN"
    assert_consistent(cost)


def test_rented_hardware_is_billed_by_the_hour_with_electricity_included() -> None:
    cloud = HardwareProfile(name="cloud", usd_per_hour=0.72, electricity_included=True, idle_watts=40, busy_watts=160)
    cost = cell_cost([_sample(1000, 100, 1.0, 4.0, 0)], _settings(cloud), [])
    assert cost["total"] == {"hardware": pytest.approx(0.001), "electricity": 0.0, "total": pytest.approx(0.001)}
    assert cost["energy"]["kwh"] > 0  # still reported, for carbon
    assert_consistent(cost)


def test_api_comparison_prices_the_same_token_counts() -> None:
    apis = (ApiPrice("x:cheap", "Cheap", 0.10, 0.40), ApiPrice("y:dear", "Dear", 1.0, 5.0))
    cost = cell_cost([_sample(600_000, 100_000, 1.0, 1.0, 0)], _settings(apis=apis), ["meta-llama/Llama-3.2-1B-Instruct"])
    assert [row["cost"] for row in cost["apis"]["reference"]] == pytest.approx([0.06 + 0.04, 0.6 + 0.5])
    same = cost["apis"]["same_model"]
    assert same["api"] == "inference:meta/llama-3.2-1b-instruct" and same["cost"] == pytest.approx(0.6 * 0.01 + 0.1 * 0.01)
    listings = same_model_prices(["Llama-3.2-1B-Instruct"])
    assert len(listings) > 1 and cheapest(listings, 1, 1) == cheapest(listings, 600_000, 100_000)
    assert reference_price("openai:gpt-4o-mini").usd_per_1m_input > 0
    with pytest.raises(UserError, match="close matches: openai:gpt-4o-mini"):
        reference_price("openai:gpt4o-mini")


def assert_consistent(cost: dict) -> None:
    """tokens × unit price = cost, and hardware + electricity = total, for inputs, outputs and the whole."""
    total = cost["total"]
    assert total["hardware"] + total["electricity"] == pytest.approx(total["total"])
    rebuilt = {"hardware": 0.0, "electricity": 0.0, "total": 0.0}
    for key, tokens in (("per_1m_input_tokens", cost["tokens"]["input"]), ("per_1m_output_tokens", cost["tokens"]["output"])):
        if cost[key] is None:
            continue
        assert cost[key]["hardware"] + cost[key]["electricity"] == pytest.approx(cost[key]["total"])
        for share in rebuilt:
            rebuilt[share] += cost[key][share] * tokens / 1e6
    assert rebuilt == pytest.approx(total, rel=1e-9, abs=1e-15)
    if cost["n_samples"]:
        assert cost["per_sample"] * cost["n_samples"] == pytest.approx(total["total"])


# ---------------------------------------------------------------- profiles and their errors
def test_shipped_profiles_and_tables_load() -> None:
    for name in ("laptop-cpu", "desktop-gpu-8gb", "desktop-gpu-24gb", "cloud-gpu-hourly"):
        assert load_hardware(name).usd_per_busy_second > 0
    assert find_country("nga").name == "Nigeria" and find_country("Ethiopia").iso3 == "ETH"
    assert find_currency("ngn").per_usd > 100
    settings = resolve_cost(CostConfig(country="MMR", currency="MMK"))
    assert settings.country.gco2e_per_kwh and settings.reference_apis


def test_unknown_country_lists_close_matches() -> None:
    with pytest.raises(UserError) as error:
        find_country("Nigria")
    message = str(error.value)
    assert "\n" not in message and "unknown country 'Nigria'" in message and "Nigeria (NGA)" in message and "Niger (NER)" in message


def test_a_missing_hardware_field_is_named(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("price_usd: 900\nhours_per_day: 6\n")
    with pytest.raises(UserError) as error:
        load_hardware(str(path))
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "missing field 'lifetime_years'" in message
    path.write_text("price_usd: 900\nlifetime_years: 3\nhours_per_day: 6\nbusy_watts: 60\n")
    with pytest.raises(UserError, match="missing field 'idle_watts'"):
        load_hardware(str(path))
    with pytest.raises(UserError, match="unknown hardware profile 'laptop'.*laptop-cpu"):
        load_hardware("laptop")
    with pytest.raises(UserError, match="unknown currency 'NAIRA'"):
        find_currency("NAIRA")


def test_cost_settings_are_not_part_of_the_run_id() -> None:
    base = {"models": ["a/b"], "tasks": ["mgsm_symbolic"], "languages": ["hau"]}
    assert parse_config(base, "a").run_id() == parse_config({**base, "cost": {"country": "NGA", "currency": "NGN"}}, "b").run_id()
    with pytest.raises(UserError, match=r"cost\.contry'.*did you mean 'country'"):
        parse_config({**base, "cost": {"contry": "NGA"}}, "cfg.yaml")


def test_each_machine_of_a_sweep_is_priced_with_its_own_profile() -> None:
    settings = resolve_cost(CostConfig(hardware="laptop-cpu", nodes={"big": "desktop-gpu-8gb"}))
    assert settings.for_node("big").hardware.name == "desktop-gpu-8gb"
    assert settings.for_node("elsewhere").hardware.name == settings.for_node(None).hardware.name == "laptop-cpu"
    machines = {"big": settings.for_node("big")}
    assert machine_settings([{"node": "big"}, {"node": "big"}, {"node": "small"}], machines, settings).hardware.name == "desktop-gpu-8gb"
    assert machine_settings([{"doc_id": "1"}], machines, settings) is settings  # samples written before nodes were recorded
    with pytest.raises(UserError, match="unknown hardware profile 'desktop-gpu'"):
        resolve_cost(CostConfig(nodes={"big": "desktop-gpu"}))


# ---------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    config = parse_config(
        {
            "name": "tiny-cost",
            "models": [{"ref": str(tiny_model_dir), "device": "cpu"}],
            "tasks": ["mgsm_symbolic", "mgsm_symbolic_bpb", "mgsm_symbolic_tax"],
            "languages": ["eng", "hau"],
            "limit": 3,
            "batch_size": 2,
            "generation": {"max_new_tokens": 5},
            "output": str(tmp_path_factory.mktemp("cost-run")),
            "cost": {"country": "NGA"},
        },
        "test",
    )
    return config, run(config)


def test_every_summary_has_a_consistent_cost_block_derivable_from_its_samples(tiny_run) -> None:
    config, outcome = tiny_run
    settings = resolve_cost(config.cost)
    for summary in outcome.summaries:
        cost = summary["cost"]
        assert_consistent(cost)
        assert cost["tokens"] == summary["tokens"] and cost["country"] == "NGA"
        assert summary["nodes"] == {socket.gethostname(): summary["n_samples"]}  # the machine behind every sample
        assert cost["energy"]["method"] in ("tdp-estimate", "rapl") and cost["memory"]["peak_rss_mb"] > 0
    by_cell = {(s["task"], s["language"]): s for s in outcome.summaries}
    generate = by_cell[("mgsm_symbolic", "hau")]["cost"]
    assert generate["seconds"]["decode"] > 0 and generate["throughput"]["ttft_seconds"]["median"] > 0
    assert by_cell[("mgsm_symbolic_bpb", "hau")]["cost"]["per_1m_output_tokens"] is None
    assert by_cell[("mgsm_symbolic_tax", "hau")]["cost"]["language"]["premium_vs_reference"] > 1
    samples = results.load(outcome.run_dir)
    cell = samples[(samples.task == "mgsm_symbolic") & (samples.language == "hau")]
    records = [json.loads(line) for line in next(outcome.run_dir.glob("*/mgsm_symbolic/hau/samples.jsonl")).read_text().splitlines()]
    assert len(cell) == 3 and all(record["meter"]["decode_s"] >= 0 for record in records)
    recomputed = cell_cost(sorted(records, key=lambda r: r["doc_id"]), settings, [outcome.summaries[0]["model_title"]])
    assert recomputed["total"] == pytest.approx(generate["total"])
    frame = results.load_summaries(outcome.run_dir)
    assert {"cost.total.total", "cost.per_1m_input_tokens.total", "cost.energy.method", "cost.language.tokens_per_word"} <= set(frame.columns)


def test_cost_command_shows_money_per_1000_words_per_language(tiny_run) -> None:
    _, outcome = tiny_run
    shown = run_cli("cost", str(outcome.run_dir), "--currency", "NGN", env={"COLUMNS": "250"})
    assert shown.returncode == 0, shown.stderr
    assert "NGN / 1,000 words" in shown.stdout and "Hausa (hau)" in shown.stdout and "English (eng)" in shown.stdout
    assert "openai:gpt-4o-mini" in shown.stdout and ("tdp-estimate" in shown.stdout or "rapl" in shown.stdout)
    wrong = run_cli("cost", str(outcome.run_dir), "--country", "Nigria")
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr and "Nigeria (NGA)" in wrong.stderr


def test_calibrate_measures_prefill_and_decode(tiny_model_dir: Path) -> None:
    from bench.config import ModelConfig
    from bench.cost.calibrate import calibrate, weight_bytes
    from bench.models.hf import HFBackend

    backend = HFBackend(ModelConfig(ref=str(tiny_model_dir), device="cpu", dtype="float32"), batch_size=2)
    rows = calibrate(backend, [1, 2], prompt_tokens=32, gen_tokens=6, repetitions=2, bandwidth_gbs=10.0)
    assert [(row.test, row.batch) for row in rows] == [("pp32", 1), ("tg6", 1), ("pp32", 2), ("tg6", 2)]
    assert all(row.tokens_per_second > 0 and len(row.runs) == 2 for row in rows)
    decode = rows[3]
    assert decode.bound == pytest.approx(2 * 10e9 / weight_bytes(backend.model))
    assert decode.share_of_bound == pytest.approx(decode.tokens_per_second / decode.bound)
    with pytest.raises(UserError, match="--prompt-tokens"):
        calibrate(backend, [1], prompt_tokens=10_000)


def test_calibrate_command_measures_the_bandwidth_when_none_is_given(tiny_model_dir: Path) -> None:
    shown = run_cli("calibrate", "--model", str(tiny_model_dir), "--batch", "2", "--prompt-tokens", "16", "--gen-tokens", "4", "--repetitions", "1")
    assert shown.returncode == 0, shown.stderr
    assert "measured here" in shown.stdout and "tg4" in shown.stdout
    given = run_cli(
        "calibrate", "--model", str(tiny_model_dir), "--batch", "1", "--prompt-tokens", "16", "--gen-tokens", "4", "--repetitions", "1", "--bandwidth-gbs", "50"
    )
    assert given.returncode == 0 and "50 GB/s (given)" in given.stdout


def test_read_bandwidth_is_measured_in_a_plausible_range() -> None:
    from bench.cost.calibrate import measure_read_bandwidth_gbs

    assert 0.5 < measure_read_bandwidth_gbs(size_bytes=256 * 2**20, repetitions=2) < 5000  # GB/s: any CPU or GPU of this century


@pytest.mark.integration
def test_a_real_smollm2_run_is_metered(smollm2_ref: str, real_backend: str, tmp_path: Path) -> None:
    config = parse_config(
        {
            "name": "smol-cost",
            "models": [{"ref": smollm2_ref, "backend": real_backend}],
            "tasks": ["mgsm_symbolic_bpb", "mgsm_symbolic"],
            "languages": ["eng"],
            "limit": 2,
            "generation": {"max_new_tokens": 8},
            "output": str(tmp_path),
        },
        "test",
    )
    outcome = run(config)
    assert_backend_ran(outcome.summaries, real_backend)
    expected = "rapl" if any(zone.component == "cpu" for zone in rapl_zones()) else "tdp-estimate"
    for summary in outcome.summaries:
        cost = summary["cost"]
        assert cost["throughput"]["prefill_tokens_per_second"]["overall"] > 0 and cost["memory"]["peak_rss_mb"] > 100
        assert cost["energy"]["method"] == expected and cost["total"]["total"] > 0
        assert_consistent(cost)
    generate = next(s for s in outcome.summaries if s["task"] == "mgsm_symbolic")["cost"]
    assert generate["throughput"]["decode_tokens_per_second"]["overall"] > 0 and generate["throughput"]["ttft_seconds"]["median"] > 0
    manifest = results.read_manifest(outcome.run_dir) or {}
    assert next(iter(manifest["models"].values()))["meter"]["energy_methods"]["cpu"] == expected


def test_a_paid_api_is_priced_per_token_in_the_cost_report_and_the_leaderboard(tmp_path: Path) -> None:
    """Summaries, `accessbench cost` and `report` price a paid API's samples by one function: its per-token price."""
    from bench.cost.report import run_costs
    from bench.report.collect import collect
    from bench.results import CellKey, RunStore

    store = RunStore(tmp_path / "api-run")
    store.write_manifest({"run_id": "api-run", "config": {"cost": {"hardware": "laptop-cpu", "country": "NGA"}}})
    info = {"endpoint": {"price": {"api": "config:gpt", "input_per_1m": 0.15, "output_per_1m": 0.6}}}
    samples = [_sample(600_000, 100_000, 1.0, 1.0, 0)]
    for record in samples:
        record["values"]["acc"] = 1.0
    key = CellKey("gpt", "sib200", "hau_Latn")
    store.append_samples(key, samples)
    summary = {"model": "openai:gpt", "task": "sib200", "task_kind": "multiple_choice", "language": "hau_Latn", "n_samples": 1, "model_info": info}
    store.write_summary(key, {**summary, "metrics": {"acc": {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0}}})
    [costs], skipped = run_costs(tmp_path)
    assert not skipped
    expected = 0.6 * 0.15 + 0.1 * 0.6  # 600k input and 100k output tokens at US$ 0.15 and 0.60 per million
    assert costs.models[0]["cost"]["billing"] == "per token, config:gpt" and costs.models[0]["cost"]["total"]["total"] == pytest.approx(expected)
    assert costs.total == pytest.approx({"hardware": 0.0, "electricity": 0.0, "api": expected, "total": expected})
    [row] = collect([tmp_path]).rows()
    assert row["usd_per_1m_tokens"] == pytest.approx(expected / 0.7)
