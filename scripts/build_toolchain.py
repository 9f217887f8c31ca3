"""Build `envs/toolchain/data/test-00000-of-00001.parquet`: questions, reference solutions and their answers.

python scripts/build_toolchain.py

Each question fills a template with parameters drawn by a generator with a fixed seed, so a rerun writes the
same file. Its answer is what its reference solution gives when it runs, in the env's own sandbox, through the
env's own tools; parameters whose solution fails or gives an empty answer (no product left, zero stock) are
skipped.
"""

import argparse
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from codeact_envs import CodeActEnv, Compose, load_env

SEED = 0
QUESTIONS_PER_TEMPLATE = 5
ENV_FOLDER = Path(__file__).resolve().parents[1] / "envs" / "toolchain"
DEFAULT_OUTPUT = ENV_FOLDER / "data" / "test-00000-of-00001.parquet"
COLUMNS = ("task_id", "family", "question", "answer", "solution")
CATEGORIES = ("laptop", "phone", "monitor", "headset", "tablet")
CITIES = ("Amsterdam", "Berlin", "Lisbon", "London", "Madrid", "Paris", "Rome", "Vienna", "Warsaw")
CURRENCIES = ("USD", "GBP", "JPY", "CHF", "PLN", "SEK")
ORDER_DATES = ("2025-03-14", "2025-04-16", "2025-04-17", "2025-05-02", "2025-05-27", "2025-12-22", "2025-12-30")


@dataclass(frozen=True)
class Template:
    """A family of questions: text and solution code with the same `{placeholders}`, and their choices."""

    family: str
    question: str
    solution: str
    choices: dict[str, tuple]


def templates(in_stock: list[str]) -> list[Template]:
    """The question families; `in_stock` names the products with stock to order from."""
    return [
        Template(
            "priciest_affordable",
            "What is the most expensive {category} in stock that costs at most {budget} {budget_currency}? "
            "Give its price in {currency}, rounded to 2 decimals.",
            "limit_eur = {budget} * exchange_rate({budget_currency!r}, 'EUR')\n"
            "offers = search_products(category={category!r}, max_price_eur=limit_eur, in_stock_only=True)\n"
            "priciest = max(offers, key=lambda product: product['price_eur'])\n"
            "final_answer(round(priciest['price_eur'] * exchange_rate('EUR', {currency!r}), 2))\n",
            {
                "category": CATEGORIES,
                "budget": (300, 500, 800, 1000, 1200),
                "budget_currency": ("USD", "GBP", "CHF"),
                "currency": CURRENCIES,
            },
        ),
        Template(
            "order_total",
            "I order {quantity} units of the {name}, shipped as one parcel from its warehouse to {city}. "
            "What do the goods and the shipping cost together, in {currency}, rounded to 2 decimals?",
            "product = get_product({name!r})\n"
            "quote = shipping_quote(product['warehouse'], {city!r}, {quantity} * product['weight_kg'])\n"
            "total_eur = {quantity} * product['price_eur'] + quote['cost_eur']\n"
            "final_answer(round(total_eur * exchange_rate('EUR', {currency!r}), 2))\n",
            {"name": tuple(in_stock), "quantity": (2, 3), "city": CITIES, "currency": CURRENCIES},
        ),
        Template(
            "delivery_date",
            "I order the {name} on {date}; it ships from its warehouse to {city} and arrives the quoted number "
            "of business days after the order date. On which date does it arrive? Answer as YYYY-MM-DD.",
            "product = get_product({name!r})\n"
            "quote = shipping_quote(product['warehouse'], {city!r}, product['weight_kg'])\n"
            "final_answer(add_business_days({date!r}, quote['days']))\n",
            {"name": tuple(in_stock), "date": ORDER_DATES, "city": CITIES},
        ),
        Template(
            "distance_miles",
            "How far does a parcel with the {name} travel by road from its warehouse to {city}? "
            "Answer in miles, rounded to 1 decimal.",
            "product = get_product({name!r})\n"
            "kilometres = distance_km(product['warehouse'], {city!r})\n"
            "final_answer(round(convert_units(kilometres, 'km', 'mi'), 1))\n",
            {"name": tuple(in_stock), "city": CITIES},
        ),
        Template(
            "weight_pounds",
            "What is the total weight, in pounds rounded to 2 decimals, of one unit of every {category} in stock?",
            "products = search_products(category={category!r}, in_stock_only=True)\n"
            "kilograms = sum(product['weight_kg'] for product in products)\n"
            "final_answer(round(convert_units(kilograms, 'kg', 'lb'), 2))\n",
            {"category": CATEGORIES},
        ),
        Template(
            "lightest_affordable",
            "Which {category} in stock that costs at most {budget} {currency} is the lightest? Answer with its name.",
            "limit_eur = {budget} * exchange_rate({currency!r}, 'EUR')\n"
            "offers = search_products(category={category!r}, max_price_eur=limit_eur, in_stock_only=True)\n"
            "final_answer(min(offers, key=lambda product: product['weight_kg'])['name'])\n",
            {"category": CATEGORIES, "budget": (400, 700, 1000, 1500, 2500), "currency": CURRENCIES[:2]},
        ),
        Template(
            "cheapest_delivered",
            "Counting its price plus the shipping of one unit from its warehouse to {city}, which {category} in "
            "stock costs the least? Give that delivered price in {currency}, rounded to 2 decimals.",
            "def delivered_eur(product):\n"
            "    quote = shipping_quote(product['warehouse'], {city!r}, product['weight_kg'])\n"
            "    return product['price_eur'] + quote['cost_eur']\n"
            "\n"
            "offers = search_products(category={category!r}, in_stock_only=True)\n"
            "cheapest_eur = min(delivered_eur(product) for product in offers)\n"
            "final_answer(round(cheapest_eur * exchange_rate('EUR', {currency!r}), 2))\n",
            {"category": CATEGORIES, "city": CITIES, "currency": CURRENCIES},
        ),
        Template(
            "stock_value",
            "What is the {category} stock held in the {warehouse} warehouse worth (each price times its units in "
            "stock, summed), in {currency}, rounded to 2 decimals?",
            "products = search_products(category={category!r})\n"
            "value_eur = sum(p['price_eur'] * p['stock'] for p in products if p['warehouse'] == {warehouse!r})\n"
            "final_answer(round(value_eur * exchange_rate('EUR', {currency!r}), 2))\n",
            {"category": CATEGORIES, "warehouse": ("Berlin", "Madrid", "Paris"), "currency": CURRENCIES},
        ),
    ]


def parameter_draws(template: Template, rng: random.Random) -> Iterator[dict[str, Any]]:
    """Every combination of the template's choices, in an order shuffled by `rng`."""
    names = sorted(template.choices)
    combinations = list(itertools.product(*(template.choices[name] for name in names)))
    rng.shuffle(combinations)
    for values in combinations:
        yield dict(zip(names, values, strict=True))


def solved(env: CodeActEnv, solution: str) -> Any:
    """The final answer that `solution` gives in a fresh episode of `env`, or None when it fails."""
    env.reset(seed=SEED, options={"task": {"question": "", "solution": solution}})
    _, _, terminated, _, info = env.step(solution)
    return info["answer"] if terminated else None


def build_rows(env: CodeActEnv) -> list[dict[str, str]]:
    """`QUESTIONS_PER_TEMPLATE` answered questions per template, template by template."""
    rng = random.Random(SEED)
    in_stock = [product["name"] for product in env.search_products(in_stock_only=True) if product["stock"] >= 3]
    rows = []
    for template in templates(in_stock):
        for question, answer, solution in answered_questions(env, template, rng):
            task_id = f"toolchain/{len(rows):02d}"
            rows.append(
                {
                    "task_id": task_id,
                    "family": template.family,
                    "question": question,
                    "answer": answer,
                    "solution": solution,
                }
            )
    return rows


def answered_questions(env: CodeActEnv, template: Template, rng: random.Random) -> list[tuple[str, str, str]]:
    """`(question, answer, solution)` for the first `QUESTIONS_PER_TEMPLATE` draws whose solution gives an answer."""
    questions = []
    for parameters in parameter_draws(template, rng):
        solution = template.solution.format(**parameters)
        answer = solved(env, solution)
        if answer not in (None, 0, ""):
            questions.append((template.question.format(**parameters), str(answer), solution))
        if len(questions) == QUESTIONS_PER_TEMPLATE:
            return questions
    raise ValueError(
        f"template {template.family!r} has only {len(questions)} answerable questions, "
        f"not {QUESTIONS_PER_TEMPLATE}: add choices to it"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    with load_env(ENV_FOLDER, trust_remote_code=True, transform=Compose([])) as env:
        rows = build_rows(env)
    table = pa.table({column: [row[column] for row in rows] for column in COLUMNS})
    args.output.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, args.output)
    print(f"wrote {table.num_rows} tasks to {args.output}")


if __name__ == "__main__":
    main()
