"""Which weight tensors live on-chip: a 0/1 knapsack under the device's on-chip weight budget.

Item = one stored tensor; size = its storage bytes; value = the energy saved per audio-second by
keeping it resident = bytes read per audio-second x (E_dram - E_onchip). A resident tensor is loaded
once and then read on-chip on every invocation; its one-time load is amortized over the run and not
counted. The baseline ("streaming") keeps nothing resident: every invocation fetches from DRAM.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MAX_CELLS = 4096  # capacity buckets of the dynamic program; sizes round up, so the budget holds


def knapsack(sizes: Sequence[int], values: Sequence[float], capacity: int, max_cells: int = MAX_CELLS) -> list[int]:
    """Indices of the items that maximize total value with total size <= capacity.

    Exact when `capacity <= max_cells`; otherwise sizes are measured in units of
    ceil(capacity / max_cells) bytes and rounded up, so the chosen set always fits (it may
    leave up to one unit per item unused).

    Example:
        >>> knapsack([5, 4, 3], [10.0, 7.0, 6.0], capacity=7)
        [1, 2]
    """
    if capacity <= 0 or not sizes:
        return []
    unit = max(1, math.ceil(capacity / max_cells))
    cap = capacity // unit
    weights = [math.ceil(s / unit) for s in sizes]
    best = np.zeros(cap + 1)
    take = np.zeros((len(sizes), cap + 1), dtype=bool)
    for i, (w, v) in enumerate(zip(weights, values, strict=True)):
        if w > cap or v <= 0:
            continue
        candidate = best[: cap + 1 - w] + v
        improves = candidate > best[w:]
        take[i, w:] = improves
        best[w:] = np.where(improves, candidate, best[w:])
    chosen, room = [], cap
    for i in range(len(sizes) - 1, -1, -1):
        if take[i, room]:
            chosen.append(i)
            room -= weights[i]
    return sorted(chosen)
