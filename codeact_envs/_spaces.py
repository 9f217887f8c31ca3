"""A Gymnasium space for text that may hold any Unicode character."""

from typing import Any

import numpy as np
from gymnasium.spaces import Text

_SAMPLE_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 =+-*/()[]{}:,.'\"\n_éλ中🙂"


class UnicodeText(Text):
    """Any Python `str`, whatever its characters and length (Gymnasium's `Text` accepts only a fixed charset).

    It is a `gymnasium.spaces.Text`, so libraries that convert text spaces (TorchRL's `GymWrapper`) accept it.
    Its charset and lengths only shape `sample()`; `contains` accepts every string.

    Args:
        max_sample_length: Longest string `sample()` draws.
        seed: Seed of the space's random generator.
    """

    def __init__(self, max_sample_length: int = 64, seed: int | np.random.Generator | None = None):
        self.max_sample_length = max_sample_length
        super().__init__(max_sample_length, min_length=0, charset=_SAMPLE_ALPHABET, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def contains(self, x: Any) -> bool:
        return isinstance(x, str)

    def __repr__(self) -> str:
        return "UnicodeText()"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, UnicodeText)

    def __hash__(self) -> int:
        return hash(UnicodeText)
