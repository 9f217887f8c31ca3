"""Toolchain as a CodeAct env: answer shopping questions by chaining deterministic tools over small tables."""

import datetime
import math
from dataclasses import asdict, dataclass
from typing import Any

from codeact_envs import CodeActEnv, tool

INSTRUCTIONS = """\
Answer the question below. The facts it needs (products, prices, stock, exchange rates, distances, \
shipping, holidays, unit factors) are available only through the tools described in your \
instructions, so call them; one action may call several tools and combine their results in Python.

Question: {question}

Call final_answer(answer) with the bare answer (a number, a date or a name), as the question asks."""


@dataclass(frozen=True)
class Product:
    """One row of the product catalog; prices in EUR, weights in kg."""

    sku: str
    name: str
    category: str
    price_eur: float
    stock: int
    weight_kg: float
    warehouse: str


CATALOG = (
    Product("L-100", "Aero 13", "laptop", 899.00, 4, 1.20, "Berlin"),
    Product("L-200", "Aero 15 Pro", "laptop", 1349.00, 0, 1.85, "Berlin"),
    Product("L-300", "Basic Book 14", "laptop", 549.00, 12, 1.60, "Madrid"),
    Product("L-400", "Studio X16", "laptop", 1899.00, 2, 2.10, "Paris"),
    Product("L-500", "Nomad 12", "laptop", 699.00, 0, 0.98, "Paris"),
    Product("L-600", "Forge 17", "laptop", 1179.00, 3, 2.75, "Madrid"),
    Product("P-100", "Pixelle 8", "phone", 599.00, 25, 0.19, "Berlin"),
    Product("P-200", "Orbit Mini", "phone", 329.00, 0, 0.14, "Madrid"),
    Product("P-300", "Orbit Max", "phone", 1099.00, 7, 0.23, "Paris"),
    Product("P-400", "Kite Lite", "phone", 219.00, 40, 0.17, "Madrid"),
    Product("M-100", "View 24", "monitor", 179.00, 15, 3.40, "Paris"),
    Product("M-200", "View 27 QHD", "monitor", 319.00, 6, 5.10, "Berlin"),
    Product("M-300", "Panorama 34", "monitor", 649.00, 0, 7.80, "Berlin"),
    Product("M-400", "Studio 32 4K", "monitor", 899.00, 3, 6.60, "Madrid"),
    Product("H-100", "Hush 700", "headset", 279.00, 18, 0.25, "Paris"),
    Product("H-200", "Beat Buds", "headset", 89.00, 60, 0.05, "Berlin"),
    Product("H-300", "Monitor Pro 50", "headset", 149.00, 0, 0.32, "Madrid"),
    Product("T-100", "Slate 11", "tablet", 499.00, 9, 0.47, "Berlin"),
    Product("T-200", "Slate Mini", "tablet", 379.00, 0, 0.30, "Paris"),
    Product("T-300", "Canvas 13", "tablet", 999.00, 5, 0.68, "Madrid"),
)
UNITS_PER_EUR = {"EUR": 1.0, "USD": 1.0825, "GBP": 0.8512, "JPY": 162.40, "CHF": 0.9468, "PLN": 4.3210, "SEK": 11.2570}
CITIES = ("Amsterdam", "Berlin", "Lisbon", "London", "Madrid", "Paris", "Rome", "Vienna", "Warsaw")
ROAD_KM = {
    "Berlin": (655, 0, 2760, 1100, 2300, 1050, 1500, 680, 575),
    "Madrid": (1770, 2300, 625, 1720, 0, 1270, 1950, 2420, 2860),
    "Paris": (500, 1050, 1740, 460, 1270, 0, 1420, 1235, 1590),
}
HOLIDAYS = ("2025-01-01", "2025-04-18", "2025-04-21", "2025-05-01", "2025-05-29", "2025-12-25", "2025-12-26")
UNITS = {
    "mass": {"kg": 1.0, "g": 0.001, "lb": 0.45359237, "oz": 0.028349523125},
    "length": {"m": 1.0, "km": 1000.0, "cm": 0.01, "mi": 1609.344, "ft": 0.3048, "in": 0.0254},
}


class ToolchainEnv(CodeActEnv):
    """One shopping question per episode; the tools are the only way to the catalog, rates and distances."""

    def setup(self, task: dict[str, Any]) -> str:
        return INSTRUCTIONS.format(question=task["question"])

    def oracle(self, task: dict[str, Any]) -> str:
        return task["solution"]

    @tool
    def search_products(
        self, category: str | None = None, max_price_eur: float | None = None, in_stock_only: bool = False
    ) -> list[dict]:
        """List catalog products, optionally filtered.

        Categories: laptop, phone, monitor, headset, tablet.

        Args:
            category: Keep only this category (None keeps all).
            max_price_eur: Keep only products whose price is at most this many EUR (None keeps all).
            in_stock_only: Keep only products with at least one unit in stock.

        Returns:
            Products as dicts with keys sku, name, category, price_eur, stock, weight_kg, warehouse.
        """
        if category is not None and category not in {product.category for product in CATALOG}:
            raise ValueError(f"unknown category {category!r}; use one of laptop, phone, monitor, headset, tablet")
        return [
            asdict(product)
            for product in CATALOG
            if (category is None or product.category == category)
            and (max_price_eur is None or product.price_eur <= max_price_eur)
            and (product.stock > 0 or not in_stock_only)
        ]

    @tool
    def get_product(self, name_or_sku: str) -> dict:
        """Look up one product by its exact name (e.g. "Aero 13") or SKU (e.g. "L-100").

        Returns:
            A dict with keys sku, name, category, price_eur, stock, weight_kg, warehouse.
        """
        for product in CATALOG:
            if name_or_sku in (product.name, product.sku):
                return asdict(product)
        raise KeyError(f"no product named {name_or_sku!r}; call search_products() to see names and SKUs")

    @tool
    def exchange_rate(self, source: str, target: str) -> float:
        """How many units of currency `target` one unit of currency `source` buys.

        Currencies: EUR, USD, GBP, JPY, CHF, PLN, SEK. Example: an amount in EUR times
        exchange_rate("EUR", "USD") is the amount in USD.
        """
        return _units_per_eur(target) / _units_per_eur(source)

    @tool
    def distance_km(self, origin: str, destination: str) -> int:
        """Road distance in km from a warehouse (Berlin, Madrid or Paris) to a destination city.

        Destinations: Amsterdam, Berlin, Lisbon, London, Madrid, Paris, Rome, Vienna, Warsaw.
        """
        if origin not in ROAD_KM:
            raise ValueError(f"origin {origin!r} is not a warehouse; use one of {', '.join(ROAD_KM)}")
        if destination not in CITIES:
            raise ValueError(f"no route to {destination!r}; destinations: {', '.join(CITIES)}")
        return ROAD_KM[origin][CITIES.index(destination)]

    @tool
    def shipping_quote(self, origin: str, destination: str, weight_kg: float) -> dict:
        """Quote one parcel of `weight_kg` from a warehouse to a destination city.

        Returns:
            {"cost_eur": price in EUR, "days": business days from the order date to delivery}.
        """
        km = self.distance_km(origin, destination)
        return {"cost_eur": round(4.90 + 0.0012 * km * max(weight_kg, 1.0), 2), "days": 1 + math.ceil(km / 700)}

    @tool
    def add_business_days(self, start_date: str, days: int) -> str:
        """The date `days` business days after `start_date` (YYYY-MM-DD), skipping weekends and holidays.

        Holidays (no deliveries): 2025-01-01, 2025-04-18, 2025-04-21, 2025-05-01, 2025-05-29,
        2025-12-25, 2025-12-26.
        """
        date = datetime.date.fromisoformat(start_date)
        while days > 0:
            date += datetime.timedelta(days=1)
            if _is_business_day(date):
                days -= 1
        return date.isoformat()

    @tool
    def convert_units(self, value: float, from_unit: str, to_unit: str) -> float:
        """Convert `value` between units of the same kind: mass (kg, g, lb, oz) or length (m, km, cm, mi, ft, in)."""
        (from_kind, from_factor), (to_kind, to_factor) = _unit(from_unit), _unit(to_unit)
        if from_kind != to_kind:
            raise ValueError(f"cannot convert {from_kind} ({from_unit!r}) to {to_kind} ({to_unit!r})")
        return value * from_factor / to_factor


def _units_per_eur(currency: str) -> float:
    if currency not in UNITS_PER_EUR:
        raise ValueError(f"unknown currency {currency!r}; use one of {', '.join(UNITS_PER_EUR)}")
    return UNITS_PER_EUR[currency]


def _is_business_day(date: datetime.date) -> bool:
    return date.weekday() < 5 and date.isoformat() not in HOLIDAYS


def _unit(name: str) -> tuple[str, float]:
    """The kind of unit `name` measures and its size in the kind's base unit (kg or m)."""
    for kind, factors in UNITS.items():
        if name in factors:
            return kind, factors[name]
    raise ValueError(
        f"unknown unit {name!r}; use one of {', '.join(unit for units in UNITS.values() for unit in units)}"
    )
