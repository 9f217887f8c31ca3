"""Build `envs/battleship/data/test-00000-of-00001.parquet`: Battleship boards with their hidden fleets.

python scripts/build_battleship.py

Fleets are placed by a generator with a fixed seed, so a rerun writes the same file. Ships lie in straight
lines and never touch, not even diagonally. The shot budget is 70% of the board's cells.
"""

import argparse
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SEED = 0
GAMES_PER_BOARD = 8
SHOT_BUDGET = 0.7
FLEETS = {6: (3, 2, 2), 8: (4, 3, 3, 2), 10: (5, 4, 3, 3, 2)}
ROWS = "ABCDEFGHIJ"
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "envs" / "battleship" / "data" / "test-00000-of-00001.parquet"

Position = tuple[int, int]


def placements(size: int, length: int) -> list[tuple[Position, ...]]:
    """Every horizontal, then every vertical, position of a ship of `length` on the board."""
    across = [tuple((row, col + i) for i in range(length)) for row in range(size) for col in range(size - length + 1)]
    down = [tuple((row + i, col) for i in range(length)) for row in range(size - length + 1) for col in range(size)]
    return across + down


def surroundings(ship: tuple[Position, ...]) -> set[Position]:
    """The ship's cells and their eight neighbours: where no other ship may go."""
    return {(row + dr, col + dc) for row, col in ship for dr in (-1, 0, 1) for dc in (-1, 0, 1)}


def fleet(size: int, lengths: tuple[int, ...], rng: random.Random) -> list[tuple[Position, ...]]:
    """Ships of `lengths` placed at random, none touching another; starts over when one does not fit."""
    while True:
        ships: list[tuple[Position, ...]] = []
        blocked: set[Position] = set()
        for length in lengths:
            free = [ship for ship in placements(size, length) if not blocked.intersection(ship)]
            if not free:
                break
            ships.append(rng.choice(free))
            blocked |= surroundings(ships[-1])
        else:
            return ships


def cell_name(position: Position) -> str:
    return f"{ROWS[position[0]]}{position[1] + 1}"


def build_rows() -> list[dict]:
    """`GAMES_PER_BOARD` games for each board size, smallest boards first."""
    rng = random.Random(SEED)
    rows = []
    for size, lengths in FLEETS.items():
        for _ in range(GAMES_PER_BOARD):
            ships = [[cell_name(position) for position in ship] for ship in fleet(size, lengths, rng)]
            rows.append(
                {
                    "task_id": f"battleship/{len(rows):02d}",
                    "size": size,
                    "max_shots": round(SHOT_BUDGET * size * size),
                    "ships": ships,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    rows = build_rows()
    schema = pa.schema(
        [
            ("task_id", pa.string()),
            ("size", pa.int64()),
            ("max_shots", pa.int64()),
            ("ships", pa.list_(pa.list_(pa.string()))),
        ]
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, args.output)
    print(f"wrote {table.num_rows} games to {args.output}")


if __name__ == "__main__":
    main()
