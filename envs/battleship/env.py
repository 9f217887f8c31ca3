"""Battleship as a CodeAct env: find a hidden fleet with a limited number of shots, acting only through tools."""

from dataclasses import dataclass, field
from typing import Any, ClassVar, SupportsFloat

import numpy as np

from codeact_envs import CodeActEnv, Step, Transform, tool

ROWS = "ABCDEFGHIJKLMNOP"
CELL_PX = 24
LINE_PX = 2
COLORS = {".": (28, 56, 104), "o": (176, 200, 224), "x": (230, 70, 40), "#": (110, 20, 20), "s": (150, 150, 150)}

Position = tuple[int, int]

INSTRUCTIONS = """\
Battleship, game {task_id}. A fleet is hidden on a {size}x{size} board: rows A-{last_row}, columns 1-{size}. \
Its ships have lengths {fleet}; each lies in a straight horizontal or vertical line, and no two ships touch, \
not even diagonally.

Find the fleet with at most {max_shots} shots: fire(cell) fires at a cell such as "B7", board() shows what you \
know so far, status() counts shots and sunk ships. When you know every cell of the fleet, call \
final_answer(cells) with the list of all of them, e.g. ["A1", "A2", "C5"]. You win when the list holds exactly \
the cells of the fleet."""

ORACLE = """\
state = status()
size, fleet = state["size"], state["fleet"]
known, found = {}, []

def name(cell):
    return "ABCDEFGHIJKLMNOP"[cell[0]] + str(cell[1] + 1)

def is_open(cell):
    return 0 <= cell[0] < size and 0 <= cell[1] < size and cell not in known

def shoot(cell):
    known[cell] = fire(name(cell))
    return known[cell]

def ends(hits):
    (row, col), rows, cols = hits[0], {r for r, _ in hits}, {c for _, c in hits}
    if len(hits) == 1:
        return [(row - 1, col), (row + 1, col), (row, col - 1), (row, col + 1)]
    if len(rows) == 1:
        return [(row, min(cols) - 1), (row, max(cols) + 1)]
    return [(min(rows) - 1, col), (max(rows) + 1, col)]

def sink(hit):
    hits, outcome = [hit], "hit"
    while outcome != "sunk":
        target = next(cell for cell in ends(hits) if is_open(cell))
        outcome = shoot(target)
        if outcome != "miss":
            hits.append(target)
    return hits

def mark_water_around(ship):
    for row, col in ship:
        for cell in [(row + dr, col + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]:
            if is_open(cell):
                known[cell] = "water"

for cell in [(row, col) for row in range(size) for col in range(size) if (row + col) % 2 == 0]:
    if len(found) == len(fleet):
        break
    if is_open(cell) and shoot(cell) == "hit":
        found.append(sink(cell))
        mark_water_around(found[-1])
final_answer(sorted(name(cell) for ship in found for cell in ship))
"""


@dataclass
class Game:
    """The hidden fleet and the shots fired at it; it lives on the host, never in the agent's sandbox."""

    size: int
    ships: tuple[frozenset[Position], ...]
    max_shots: int
    shots: dict[Position, str] = field(default_factory=dict)

    def fire(self, position: Position) -> str:
        """Record a shot at `position` and return "miss", "hit" or "sunk"."""
        ship = self.ship_at(position)
        self.shots[position] = "miss" if ship is None else "sunk" if ship <= {*self.shots, position} else "hit"
        return self.shots[position]

    def ship_at(self, position: Position) -> frozenset[Position] | None:
        """The ship that covers `position`, or None for water."""
        return next((ship for ship in self.ships if position in ship), None)

    def sunk(self) -> list[frozenset[Position]]:
        """The ships whose every cell was hit."""
        return [ship for ship in self.ships if ship <= self.shots.keys()]

    def symbol(self, position: Position, *, reveal: bool = False) -> str:
        """What a player sees at `position`: . unknown, o miss, x hit, # sunk; s an afloat ship when revealed."""
        ship = self.ship_at(position)
        if position not in self.shots:
            return "s" if reveal and ship is not None else "."
        if ship is None:
            return "o"
        return "#" if ship in self.sunk() else "x"

    def grid(self, *, reveal: bool = False) -> list[list[str]]:
        """The symbol of every cell, row by row."""
        return [[self.symbol((row, col), reveal=reveal) for col in range(self.size)] for row in range(self.size)]


class BattleshipEnv(CodeActEnv):
    """One Battleship board per episode; the fleet comes from the task row and stays on the host."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 1}
    game: Game | None = None
    game_over: bool = False

    def setup(self, task: dict[str, Any]) -> str:
        ships = tuple(frozenset(_position(cell, task["size"]) for cell in ship) for ship in task["ships"])
        self.game = Game(task["size"], ships, task["max_shots"])
        self.game_over = False
        fleet = ", ".join(str(len(ship)) for ship in ships)
        return INSTRUCTIONS.format(
            task_id=task["task_id"],
            size=task["size"],
            last_row=ROWS[task["size"] - 1],
            fleet=fleet,
            max_shots=task["max_shots"],
        )

    def oracle(self, task: dict[str, Any]) -> str:
        return ORACLE

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = super().step(action)
        self.game_over = terminated or truncated
        return observation, reward, terminated, truncated, info

    def render(self) -> str | np.ndarray | None:
        """The transcript and the board as the player sees it (mode "ansi"), or a picture of that board (mode
        "rgb_array") where the ships left afloat show in grey once the episode is over."""
        if self.render_mode is not None and self.game is None:
            raise RuntimeError("there is no board before the first episode: call reset() before render()")
        if self.render_mode == "rgb_array":
            return _picture(self.game.grid(reveal=self.game_over))
        transcript = super().render()
        return None if transcript is None else f"{transcript}--- board ---\n{self.board()}\n"

    @tool
    def fire(self, cell: str) -> str:
        """Fire one shot at `cell`, a row letter and a column number such as "B7".

        Returns:
            "miss", "hit", or "sunk" when the shot hits the last unhit cell of a ship.

        Raises:
            ValueError: The cell is off the board or was already fired at, or no shots are left.
        """
        position = _position(cell, self.game.size)
        if position in self.game.shots:
            raise ValueError(f"{cell!r} was already fired at ({self.game.shots[position]}); fire at another cell")
        if len(self.game.shots) >= self.game.max_shots:
            raise ValueError(f"no shots left: all {self.game.max_shots} are fired; call final_answer(cells)")
        return self.game.fire(position)

    @tool
    def board(self) -> str:
        """The board as you know it: . not fired at, o miss, x hit, # a cell of a sunk ship; and shots left."""
        header = "  " + " ".join(f"{col + 1:>2}" for col in range(self.game.size))
        lines = [f"{ROWS[row]} " + " ".join(f"{s:>2}" for s in symbols) for row, symbols in enumerate(self.game.grid())]
        return "\n".join([header, *lines, f"shots left: {self.game.max_shots - len(self.game.shots)}"])

    @tool
    def status(self) -> dict:
        """Counts: {"size", "fleet" (ship lengths), "sunk" (lengths of sunk ships), "shots_fired", "shots_left"}."""
        return {
            "size": self.game.size,
            "fleet": sorted((len(ship) for ship in self.game.ships), reverse=True),
            "sunk": sorted((len(ship) for ship in self.game.sunk()), reverse=True),
            "shots_fired": len(self.game.shots),
            "shots_left": self.game.max_shots - len(self.game.shots),
        }


class FleetFound(Transform):
    """Reward 1.0 on the episode's last step when the final answer lists exactly the fleet's cells, else 0.0."""

    task_columns = ("ships",)

    def __call__(self, step: Step) -> Step:
        if not step.done:
            return step
        found = step.execution.has_final_answer and _cells(step.execution.final_answer) == _fleet_cells(step.task)
        return step.add_reward(self.name, 1.0 if found else 0.0)


def _position(cell: str, size: int) -> Position:
    """`"B7"` as `(1, 6)`; a cell off the board is an error that says what a cell looks like."""
    text = str(cell).strip().upper()
    if len(text) >= 2 and text[0] in ROWS[:size] and text[1:].isdigit() and 1 <= int(text[1:]) <= size:
        return ROWS.index(text[0]), int(text[1:]) - 1
    raise ValueError(
        f"{cell!r} is not a cell of the {size}x{size} board: use a row A-{ROWS[size - 1]} and a column 1-{size}, "
        "e.g. 'B7'"
    )


def _cells(answer: Any) -> set[str] | None:
    """The cells an answer names, upper-cased; None when it is not a list of strings."""
    if not isinstance(answer, list) or not all(isinstance(cell, str) for cell in answer):
        return None
    return {cell.strip().upper() for cell in answer}


def _fleet_cells(task: dict[str, Any]) -> set[str]:
    return {cell for ship in task["ships"] for cell in ship}


def _picture(grid: list[list[str]]) -> np.ndarray:
    """The board as an RGB image: one square of `CELL_PX` pixels per cell, colored by its symbol."""
    size = len(grid)
    side = size * CELL_PX + (size + 1) * LINE_PX
    image = np.zeros((side, side, 3), dtype=np.uint8)
    for row, symbols in enumerate(grid):
        for col, symbol in enumerate(symbols):
            top, left = LINE_PX + row * (CELL_PX + LINE_PX), LINE_PX + col * (CELL_PX + LINE_PX)
            image[top : top + CELL_PX, left : left + CELL_PX] = COLORS[symbol]
    return image
