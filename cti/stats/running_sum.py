"""The builtin ``sum()`` of a list of floats that grows at its end, kept as it grows.

A mean of the day's waits must be the very float ``sum(waits) / len(waits)`` gives, to the
last bit: rounded to the millisecond, a sum off by one ulp can round the other way. ``sum()``
adds in order, plainly up to Python 3.11 and with Neumaier's compensation from 3.12
(CPython's ``builtin_sum_impl``), so a running total repeats its steps, whichever it is here.
A value may change after it was added (a wrap-up joins a finished leg's handle time): the
total is folded again from the last checkpoint before it, lazily, when next read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

# Each is lost by a plain sum (0.0), kept by a compensated one (2.0).
COMPENSATED = sum([1.0, 1e100, 1.0, -1e100]) == 2.0
BLOCK = 256  # values between checkpoints


class RunningSum:
    __slots__ = ("_c", "_f", "_marks", "_upto", "values")

    def __init__(self) -> None:
        self.values: list[float] = []
        self._f = 0.0  # the fold of values[:_upto]: the sum so far and its compensation
        self._c = 0.0
        self._upto = 0
        self._marks: list[tuple[float, float]] = []  # the fold before values[i * BLOCK]

    def __len__(self) -> int:
        return len(self.values)

    def append(self, value: float) -> None:
        self.values.append(value)

    def __setitem__(self, index: int, value: float) -> None:
        self.values[index] = value
        if index < self._upto:
            block = index // BLOCK
            self._f, self._c = self._marks[block]
            del self._marks[block:]
            self._upto = block * BLOCK

    def total(self, more: Iterable[float] = ()) -> float:
        """``sum(self.values + list(more))``, as the builtin gives it."""
        values, marks = self.values, self._marks
        f, c = self._f, self._c
        for i in range(self._upto, len(values)):
            if i % BLOCK == 0:
                marks.append((f, c))
            f, c = _add(f, c, values[i])
        self._f, self._c, self._upto = f, c, len(values)
        for value in more:
            f, c = _add(f, c, value)
        return f + c if c and math.isfinite(c) else f


def _add(f: float, c: float, x: float) -> tuple[float, float]:
    if not COMPENSATED:
        return f + x, c
    t = f + x
    if abs(f) >= abs(x):
        c += (f - t) + x
    else:
        c += (x - t) + f
    return t, c
