"""What the scene generator decides, apart from how a library renders it: a digest that a new OpenCV leaves alone.

The demo's scenes are drawn and encoded by OpenCV, so their bytes move with OpenCV's releases (5.1 draws them
differently from 5.0) even when the project changed nothing. Their plan does not: every random number the generator
draws, in order, with the call and arguments that drew it. The classes, sizes, places, identities, tilts and noise of
every face and background are such draws, so a change to the generator's logic, ranges or seed changes the plan.
Constants that only reach OpenCV (the drawn geometry of an expression) are not in it: the bytes, compared under the
releases they were recorded with, see those.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np


class PlanRecorder:
    """A NumPy random generator that hashes every draw (method, arguments, values) into a plan digest as it goes."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._hash = hashlib.sha256()
        self.draws = 0

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._rng, name)

        def draw(*args: Any, **kwargs: Any) -> Any:
            values = method(*args, **kwargs)
            self._hash.update(name.encode())
            for part in (*args, *(part for item in sorted(kwargs.items()) for part in item), values):
                self._hash.update(_canonical(part))
            self.draws += 1
            return values

        return draw

    def digest(self) -> str:
        """SHA-256 of the draws so far."""
        return self._hash.hexdigest()


def _canonical(value: Any) -> bytes:
    """The bytes of an argument or a drawn value, the same whatever NumPy release prints it."""
    if isinstance(value, str):
        return value.encode()
    array = np.asarray(value)
    return array.dtype.str.encode() + repr(array.shape).encode() + array.tobytes()
