"""A Gymnasium space for text that may hold any Unicode character."""

from typing import Any

import numpy as np
from gymnasium.spaces import Space

_SAMPLE_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 =+-*/()[]{}:,.'\"\n_éλ中🙂"


class UnicodeText(Space[str]):
    """Any Python `str`, whatever its characters (Gymnasium's `Text` accepts only a fixed charset).

    Args:
        max_sample_length: Longest string `sample()` draws; `contains` accepts any length.
        seed: Seed of the space's random generator.
    """

    def __init__(self, max_sample_length: int = 64, seed: int | np.random.Generator | None = None):
        self.max_sample_length = max_sample_length
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """A random string of up to `max_sample_length` characters, letters, code symbols and non-ASCII mixed."""
        length = int(self.np_random.integers(0, self.max_sample_length + 1))
        indices = self.np_random.integers(0, len(_SAMPLE_ALPHABET), size=length)
        return "".join(_SAMPLE_ALPHABET[i] for i in indices)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str)

    def __repr__(self) -> str:
        return "UnicodeText()"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, UnicodeText)

    def __hash__(self) -> int:
        return hash(UnicodeText)
