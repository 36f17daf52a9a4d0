"""Spend a WER budget where the energy is: one candidate per group, minimum modeled energy.

Pure logic (no model, no torch). The caller (`weightwise.optimize`) turns a device profile and a
sensitivity table into a `Problem`:

- a **group** is one weight-bearing module (or a tied pair) and has `Option`s, option 0 being the
  baseline ("keep", cost 0);
- an option's **items** are the stored tensors it leaves in the model, each with its energy per
  audio-second when streamed from DRAM and when resident on-chip (memory + MACs), its size and its
  bytes read per audio-second;
- `fixed` items are the tensors no option touches; `extra_j` is the energy that no weight choice
  changes (weight-free attention MACs, and whatever else the profiler charges).

Energy of a choice = extra_j + sum over items of (onchip_j if resident else dram_j), the resident set
being the on-chip knapsack of `weightwise.profile.placement` re-solved for that choice (as
`profile.energy.place` does for a traced model). Predicted WER increases add across groups (an
approximation; `weightwise.optimize` calibrates and checks it). Negative predicted costs count as 0:
a candidate never buys budget for another.

Two solvers, `solve` returns the lower-energy feasible one:
- `greedy`: paper 1's ratio rule. At every step each move (group -> another option) is ranked by
  energy saved / WER cost added under the current placement; the best-ranked moves are
  re-evaluated with the placement re-solved until `verify` of them save energy, the best of
  those is taken, and the placement is
  re-solved again before the next ranking.
- `exact`: multiple-choice knapsack by dynamic programming over the WER budget cut into `bins`
  units (costs rounded UP, so the answer always fits the true budget), with each option's
  streaming energy (placement ignored); its answer is then re-evaluated with the placement
  re-solved. Exact for costs on the grid when nothing fits on-chip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from weightwise.errors import InputError
from weightwise.profile.placement import knapsack

MAX_BUDGET_POINTS = 100.0  # a WER increase of 100 points: every word may be wrong


@dataclass(frozen=True)
class Item:
    """One stored tensor as the energy model sees it (rates per audio-second)."""

    nbytes: int
    dram_j: float  # energy per audio-s when read from DRAM (memory + its MACs)
    onchip_j: float  # energy per audio-s when resident on-chip (memory + its MACs)
    read_bytes: float  # bytes read per audio-s (off-chip when not resident)


@dataclass(frozen=True)
class Option:
    """One candidate of a group: its predicted WER increase (points) and the tensors it stores."""

    label: str
    wer_cost: float
    items: tuple[Item, ...]

    def __post_init__(self) -> None:
        if not math.isfinite(self.wer_cost):
            raise ValueError(f"option {self.label}: wer_cost must be finite, got {self.wer_cost}")

    @property
    def cost(self) -> float:
        return max(self.wer_cost, 0.0)

    @property
    def dram_j(self) -> float:
        return sum(i.dram_j for i in self.items)


@dataclass(frozen=True)
class Problem:
    groups: tuple[str, ...]
    options: tuple[tuple[Option, ...], ...]  # per group; option 0 is the baseline
    fixed: tuple[Item, ...] = ()
    onchip_bytes: int = 0
    extra_j: float = 0.0
    extra_offchip_bytes: float = 0.0  # per audio-second, charged whatever the choice (cache, activations)

    def __post_init__(self) -> None:
        if len(self.groups) != len(self.options) or any(not opts for opts in self.options):
            raise ValueError("every group needs at least one option (its baseline first)")


@dataclass(frozen=True)
class Solution:
    """A choice (option index per group) with what the model predicts for it."""

    choice: tuple[int, ...]
    wer_cost: float  # predicted WER increase, points
    energy_j: float  # per audio-second, placement re-solved
    offchip_bytes: float  # per audio-second
    resident_bytes: int
    method: str = ""
    steps: int = 0
    order: tuple[tuple[int, int], ...] = ()  # greedy: the (group, option) moves in the order taken


def check_budget(budget: float, flag: str = "--wer-budget") -> float:
    """The budget in WER points, or a one-line InputError."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget):
        raise InputError(f"{flag} must be a finite number of WER points, got {budget!r}")
    if budget <= 0:
        raise InputError(f"{flag} must be > 0 WER points (0.5 = +0.5 percentage points), got {budget:g}")
    if budget > MAX_BUDGET_POINTS:
        raise InputError(
            f"{flag} {budget:g} is impossible: WER points above {MAX_BUDGET_POINTS:g} mean every word may be wrong"
        )
    return float(budget)


def evaluate(
    problem: Problem, choice: tuple[int, ...] | list[int], method: str = "", steps: int = 0, order: tuple = ()
) -> Solution:
    """Energy, off-chip bytes and WER cost of `choice`, with the on-chip placement re-solved."""
    items = list(problem.fixed)
    for g, o in enumerate(choice):
        items += problem.options[g][o].items
    values = [i.dram_j - i.onchip_j for i in items]
    resident = set(knapsack([i.nbytes for i in items], values, problem.onchip_bytes))
    energy = problem.extra_j + sum(i.onchip_j if k in resident else i.dram_j for k, i in enumerate(items))
    offchip = problem.extra_offchip_bytes + sum(i.read_bytes for k, i in enumerate(items) if k not in resident)
    cost = sum(problem.options[g][o].cost for g, o in enumerate(choice))
    resident_bytes = sum(items[k].nbytes for k in resident)
    return Solution(tuple(choice), cost, energy, offchip, resident_bytes, method, steps, tuple(order))


def _group_energy(problem: Problem, choice: list[int], resident: list[list[bool]]) -> list[float]:
    return [
        sum(i.onchip_j if r else i.dram_j for i, r in zip(problem.options[g][o].items, resident[g], strict=False))
        for g, o in enumerate(choice)
    ]


def _residency(problem: Problem, choice: list[int]) -> list[list[bool]]:
    """Per group, which of its chosen items the knapsack keeps on-chip."""
    items, owner = list(problem.fixed), [None] * len(problem.fixed)
    for g, o in enumerate(choice):
        for k, item in enumerate(problem.options[g][o].items):
            items.append(item)
            owner.append((g, k))
    chosen = knapsack([i.nbytes for i in items], [i.dram_j - i.onchip_j for i in items], problem.onchip_bytes)
    flags = [[False] * len(problem.options[g][o].items) for g, o in enumerate(choice)]
    for index in chosen:
        if owner[index] is not None:
            g, k = owner[index]
            flags[g][k] = True
    return flags


def _estimate(option: Option, current: Option, resident: list[bool]) -> float:
    """Energy of `option` if it replaced `current`: resident when all of `current` was and it is
    no larger, else streamed."""
    fits = (
        all(resident) and bool(resident) and sum(i.nbytes for i in option.items) <= sum(i.nbytes for i in current.items)
    )
    return sum(i.onchip_j if fits else i.dram_j for i in option.items)


def greedy(problem: Problem, budget: float, verify: int = 4) -> Solution:
    """Paper 1's greedy: best energy-saved / WER-cost move first, re-ranked after every step."""
    choice, spent, steps, order = [0] * len(problem.groups), 0.0, 0, []
    current = evaluate(problem, choice)
    while True:
        resident = _residency(problem, choice)
        energy = _group_energy(problem, choice, resident)
        moves = []
        for g, options in enumerate(problem.options):
            now = options[choice[g]]
            for o, option in enumerate(options):
                added = option.cost - now.cost
                if o == choice[g] or spent + added > budget * (1 + 1e-12):
                    continue
                saved = energy[g] - _estimate(option, now, resident[g])
                if saved > 0:
                    moves.append((math.inf if added <= 0 else saved / added, saved, g, o, added))
        moves.sort(key=lambda m: (-m[0], -m[1]))
        best, checked = None, 0
        for _ratio, _saved, g, o, added in moves:
            if checked == verify:
                break
            trial = list(choice)
            trial[g] = o
            result = evaluate(problem, trial)
            saved = current.energy_j - result.energy_j
            if saved <= 0:
                continue
            checked += 1
            ratio = math.inf if added <= 0 else saved / added
            if best is None or (ratio, saved) > (best[0], best[1]):
                best = (ratio, saved, trial, result, added, (g, o))
        if best is None:
            break
        _ratio, _saved, choice, current, added, move = best
        spent += added
        steps += 1
        order.append(move)
    return evaluate(problem, choice, "greedy", steps, order)


def single_moves(problem: Problem) -> list[tuple[int, int, float]]:
    """(group, option, energy saved per audio-s) of every move from all-baseline, priced as the
    greedy's first ranking prices it (under the all-baseline placement)."""
    choice = [0] * len(problem.groups)
    resident = _residency(problem, choice)
    energy = _group_energy(problem, choice, resident)
    return [
        (g, o, energy[g] - _estimate(option, options[0], resident[g]))
        for g, options in enumerate(problem.options)
        for o, option in enumerate(options)
        if o
    ]


def exact(problem: Problem, budget: float, bins: int = 2000) -> Solution:
    """Multiple-choice knapsack by dynamic programming on the WER budget in `bins` units."""
    unit = budget / bins
    weights = [[math.ceil(o.cost / unit - 1e-9) for o in options] for options in problem.options]
    best = np.zeros(bins + 1)  # least streaming energy with total weight <= b
    picks = []
    for g, options in enumerate(problem.options):
        new, pick = np.full(bins + 1, np.inf), np.zeros(bins + 1, dtype=np.int64)
        for o, option in enumerate(options):
            w = weights[g][o]
            if w > bins:
                continue
            trial = np.full(bins + 1, np.inf)
            trial[w:] = best[: bins + 1 - w] + option.dram_j
            better = trial < new
            new[better], pick[better] = trial[better], o
        best = new
        picks.append(pick)
    choice, room = [0] * len(problem.groups), bins
    for g in range(len(problem.groups) - 1, -1, -1):
        choice[g] = int(picks[g][room])
        room -= weights[g][choice[g]]
    return evaluate(problem, choice, "exact", len(problem.groups) * (bins + 1))


@dataclass(frozen=True)
class PlannerResult:
    best: Solution
    greedy: Solution
    exact: Solution


def solve(problem: Problem, budget: float, bins: int = 2000, verify: int = 4) -> PlannerResult:
    """The lower-energy of `greedy` and `exact` (both within `budget` WER points)."""
    budget = check_budget(budget)
    by_greedy, by_dp = greedy(problem, budget, verify), exact(problem, budget, bins)
    best = min((by_greedy, by_dp), key=lambda s: (s.energy_j, s.wer_cost))
    return PlannerResult(best, by_greedy, by_dp)
