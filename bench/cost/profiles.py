"""Cost profiles: the hardware a run is priced as, the country's electricity (price and carbon), the currency.

All three are files under ``configs/`` that users edit: ``configs/hardware/<name>.yaml``,
``configs/electricity.csv`` and ``configs/currencies.csv`` (``#`` lines are comments).
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bench.config import CostConfig, describe_validation_error
from bench.cost.apis import ApiPrice, reference_price
from bench.errors import UserError
from bench.paths import builtin_dir

OWNED_FIELDS = {
    "price_usd": "what the machine cost in US$",
    "lifetime_years": "years you expect to use it",
    "hours_per_day": "hours a day it is in use",
}


class HardwareProfile(BaseModel):
    """A machine a run is priced as: bought (price spread over its hours of use) or rented by the hour."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    price_usd: float | None = Field(None, gt=0)
    lifetime_years: float | None = Field(None, gt=0)
    hours_per_day: float | None = Field(None, gt=0, le=24)
    usd_per_hour: float | None = Field(None, gt=0)
    electricity_included: bool = False
    idle_watts: float | None = Field(None, ge=0)
    busy_watts: float | None = Field(None, gt=0)
    memory_bandwidth_gbs: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> HardwareProfile:
        if self.usd_per_hour is None:
            for name, meaning in OWNED_FIELDS.items():
                if getattr(self, name) is None:
                    raise ValueError(f"missing field '{name}' ({meaning}); add it, or give usd_per_hour for rented hardware")
        if (self.idle_watts is None) != (self.busy_watts is None):
            missing = "idle_watts" if self.idle_watts is None else "busy_watts"
            raise ValueError(f"missing field '{missing}': give both idle_watts and busy_watts, or neither")
        return self

    @property
    def usd_per_busy_second(self) -> float:
        """Hardware share of a second of use: hourly rent, or the price spread over every hour of use in its lifetime."""
        if self.usd_per_hour is not None:
            return self.usd_per_hour / 3600
        assert self.price_usd is not None and self.lifetime_years is not None and self.hours_per_day is not None
        return self.price_usd / (self.lifetime_years * 365 * self.hours_per_day * 3600)


def hardware_profiles() -> dict[str, Path]:
    return {path.stem: path for path in sorted((builtin_dir("configs") / "hardware").glob("*.yaml"))}


def load_hardware(reference: str) -> HardwareProfile:
    """A profile by name (``laptop-cpu``) or by the path of a YAML file."""
    known = hardware_profiles()
    path = Path(reference)
    if reference in known:
        path = known[reference]
    elif not path.is_file():
        close = difflib.get_close_matches(reference, known, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UserError(f"unknown hardware profile '{reference}'; {hint}known: {', '.join(known)} (or pass the path of a YAML profile)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise UserError(f"{path} is not valid YAML ({getattr(error, 'problem', error)}); fix it") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a hardware profile must be a YAML mapping of fields (price_usd, lifetime_years, …)")
    data.setdefault("name", path.stem)
    try:
        return HardwareProfile.model_validate(data)
    except ValidationError as error:
        message = describe_validation_error(error, str(path), HardwareProfile).splitlines()[0]
        raise UserError(message.replace("field '(top level)' value error, ", "")) from None


# ---------------------------------------------------------------- tables
def _read_table(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise UserError(f"table {path} does not exist; point cost.electricity_table at a copy of configs/electricity.csv")
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


@dataclass(frozen=True)
class Country:
    iso3: str
    name: str
    currency: str
    usd_per_kwh: float
    price_date: str
    price_source: str
    gco2e_per_kwh: float | None
    carbon_year: str
    carbon_source: str


def _number(text: str | None) -> float | None:
    return float(text) if text not in (None, "") else None


def find_country(query: str, table: Path | None = None) -> Country:
    """A country's row by ISO alpha-3 code or English name; an unknown one lists the closest names."""
    path = table or builtin_dir("configs") / "electricity.csv"
    rows = _read_table(path)
    wanted = query.strip().casefold()
    for row in rows:
        if wanted in (row["iso3"].casefold(), row["country"].casefold()):
            price = _number(row["usd_per_kwh"])
            if price is None:
                raise UserError(f"{path} has no electricity price for {row['country']} ({row['iso3']}): {row['price_source']}; add usd_per_kwh to its row")
            return Country(
                row["iso3"],
                row["country"],
                row["currency"],
                price,
                row["price_date"],
                row["price_source"],
                _number(row["gco2e_per_kwh"]),
                row["carbon_year"],
                row["carbon_source"],
            )
    labels = {row["country"].casefold(): f"{row['country']} ({row['iso3']})" for row in rows}
    labels.update({row["iso3"].casefold(): f"{row['country']} ({row['iso3']})" for row in rows})
    close = list(dict.fromkeys(labels[key] for key in difflib.get_close_matches(wanted, labels, n=4, cutoff=0.6)))
    hint = f"close matches: {', '.join(close)}" if close else "use an ISO alpha-3 code such as NGA, ETH or IND"
    raise UserError(f"unknown country '{query}' in {path}; {hint} (or add a row to the table)")


@dataclass(frozen=True)
class Currency:
    code: str
    per_usd: float
    rate_date: str
    source: str


def find_currency(code: str) -> Currency:
    path = builtin_dir("configs") / "currencies.csv"
    rows = {row["code"]: row for row in _read_table(path)}
    row = rows.get(code.strip().upper())
    if row is None:
        close = difflib.get_close_matches(code.strip().upper(), rows, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UserError(f"unknown currency '{code}'; {hint}use an ISO 4217 code listed in {path} (or add its rate there)")
    return Currency(row["code"], float(row["per_usd"]), row["rate_date"], row["source"])


# ---------------------------------------------------------------- everything a run is priced with
@dataclass(frozen=True)
class CostSettings:
    hardware: HardwareProfile
    country: Country
    currency: Currency
    reference_apis: tuple[ApiPrice, ...]
    nodes: Mapping[str, HardwareProfile] = field(default_factory=dict)  # a machine's own profile, by the node name its samples record

    def for_node(self, node: str | None) -> CostSettings:
        """The settings a machine's work is priced with: its own profile where ``cost.nodes`` lists it, else the run's."""
        return replace(self, hardware=self.nodes[node]) if node is not None and node in self.nodes else self

    def describe(self) -> dict[str, Any]:
        """The settings as recorded in every cost block."""
        return {
            "hardware_profile": self.hardware.name,
            "country": self.country.iso3,
            "currency": self.currency.code,
            "currency_per_usd": self.currency.per_usd,
            "currency_rate_date": self.currency.rate_date,
            "electricity_per_kwh": self.country.usd_per_kwh * self.currency.per_usd,
            "electricity_price_date": self.country.price_date,
            "electricity_price_source": self.country.price_source,
            "gco2e_per_kwh": self.country.gco2e_per_kwh,
            "carbon_source": f"{self.country.carbon_source} ({self.country.carbon_year})" if self.country.carbon_source else None,
        }

    def record(self) -> dict[str, Any]:
        """What a run's manifest keeps: ``describe()`` and the values of the hardware profile and the country's row,
        so the run can be re-priced on any machine and from any folder, without the profile's file."""
        return {**self.describe(), "hardware_values": self.hardware.model_dump(), "country_values": asdict(self.country)}


def recorded_cost(manifest: Mapping[str, Any], overrides: Mapping[str, str | None]) -> CostSettings:
    """The settings a run was priced with, from its manifest; a given override (``--hardware``, ``--country``,
    ``--currency``) re-prices it. A manifest written before the values were kept names its profile, looked up here."""
    section = dict((manifest.get("config") or {}).get("cost") or {})
    given = {key: value for key, value in overrides.items() if value is not None}
    config = CostConfig.model_validate({**section, **given})
    recorded = manifest.get("cost") or {}
    if "hardware" not in given and isinstance(recorded.get("hardware_values"), dict):
        hardware = HardwareProfile.model_validate(recorded["hardware_values"])
    else:
        hardware = load_hardware(config.hardware)
    if "country" not in given and isinstance(recorded.get("country_values"), dict):
        country = Country(**recorded["country_values"])
    else:
        country = find_country(config.country, config.electricity_table)
    return CostSettings(hardware, country, find_currency(config.currency), tuple(reference_price(api) for api in config.reference_apis))


def resolve_cost(config: CostConfig) -> CostSettings:
    """Check and load everything a cost section names (before any model is loaded)."""
    return CostSettings(
        hardware=load_hardware(config.hardware),
        country=find_country(config.country, config.electricity_table),
        currency=find_currency(config.currency),
        reference_apis=tuple(reference_price(api) for api in config.reference_apis),
        nodes={name: load_hardware(reference) for name, reference in config.nodes.items()},
    )
