"""Planner on synthetic tables: exact DP equals brute force; greedy is feasible and re-solves placement."""

import itertools
import random

import pytest

from weightwise.compress.planner import Item, Option, Problem, check_budget, evaluate, exact, greedy, solve
from weightwise.errors import InputError


def item(nbytes, read_per_s, dram_pj=50.0, onchip_pj=4.0, compute_j=0.0):
    return Item(
        nbytes, read_per_s * dram_pj * 1e-12 + compute_j, read_per_s * onchip_pj * 1e-12 + compute_j, read_per_s
    )


def random_problem(rng, n_groups, n_options, onchip_bytes=0, integer_costs=True):
    options = []
    for _ in range(n_groups):
        opts = [Option("keep", 0.0, (item(rng.randint(10, 100), rng.uniform(1e6, 1e8)),))]
        for o in range(1, n_options):
            cost = rng.randint(0, 6) if integer_costs else rng.uniform(0, 6)
            opts.append(
                Option(
                    f"c{o}",
                    float(cost),
                    tuple(item(rng.randint(5, 100), rng.uniform(1e5, 1e8)) for _ in range(rng.randint(1, 2))),
                )
            )
        options.append(tuple(opts))
    fixed = (item(30, 1e7),)
    return Problem(tuple(f"g{g}" for g in range(n_groups)), tuple(options), fixed, onchip_bytes, 1e-4)


def brute_force(problem, budget):
    """Least energy (placement re-solved) over every choice within the budget."""
    best = None
    for choice in itertools.product(*(range(len(opts)) for opts in problem.options)):
        result = evaluate(problem, choice)
        if result.wer_cost <= budget + 1e-9 and (best is None or result.energy_j < best.energy_j - 1e-18):
            best = result
    return best


def test_exact_equals_brute_force_without_onchip_memory():
    rng = random.Random(1)
    for _ in range(40):
        problem = random_problem(rng, rng.randint(1, 5), rng.randint(1, 4))
        budget = rng.randint(1, 12)
        truth = brute_force(problem, budget)
        found = exact(problem, budget, bins=budget * 4)  # integer costs lie on the grid
        assert found.wer_cost <= budget
        assert found.energy_j == pytest.approx(truth.energy_j, rel=1e-12)


def test_exact_with_real_valued_costs_fits_the_budget_and_is_near_optimal():
    rng = random.Random(2)
    for _ in range(30):
        problem = random_problem(rng, rng.randint(2, 5), 4, integer_costs=False)
        budget = rng.uniform(0.5, 10)
        truth = brute_force(problem, budget)
        found = exact(problem, budget, bins=4000)
        assert found.wer_cost <= budget
        assert found.energy_j >= truth.energy_j * (1 - 1e-12)
        # rounding costs up by at most budget/bins per group can only lose a little
        assert found.energy_j <= brute_force(problem, budget - 5 * budget / 4000).energy_j * (1 + 1e-12)


def test_greedy_is_feasible_and_never_beats_brute_force():
    rng = random.Random(3)
    for _ in range(40):
        problem = random_problem(rng, rng.randint(1, 5), rng.randint(2, 4), onchip_bytes=rng.choice([0, 60, 150]))
        budget = rng.uniform(0.5, 12)
        truth = brute_force(problem, budget)
        found = greedy(problem, budget)
        assert found.wer_cost <= budget * (1 + 1e-9)
        assert found.energy_j >= truth.energy_j * (1 - 1e-12)
        assert found.energy_j <= evaluate(problem, [0] * len(problem.groups)).energy_j


def test_greedy_is_optimal_when_every_move_costs_the_same():
    # equal costs: the ratio rule takes the largest savings first, which is optimal
    rng = random.Random(4)
    for _ in range(20):
        options = tuple(
            (
                Option("keep", 0.0, (item(10, rng.uniform(1e7, 1e8)),)),
                Option("int8", 1.0, (item(5, rng.uniform(1e5, 1e6)),)),
            )
            for _ in range(6)
        )
        problem = Problem(tuple(map(str, range(6))), options)
        for budget in (1, 2, 3.5, 6):
            assert greedy(problem, budget).energy_j == pytest.approx(brute_force(problem, budget).energy_j)


def test_solve_returns_the_better_solver_and_brute_force_bounds_it():
    rng = random.Random(5)
    for _ in range(25):
        problem = random_problem(rng, rng.randint(2, 4), 3, onchip_bytes=rng.choice([0, 80]))
        budget = float(rng.randint(1, 8))
        result = solve(problem, budget, bins=int(budget) * 4)
        assert result.best.energy_j == min(result.greedy.energy_j, result.exact.energy_j)
        assert result.best.energy_j >= brute_force(problem, budget).energy_j * (1 - 1e-12)
        if problem.onchip_bytes == 0:
            assert result.best.energy_j == pytest.approx(brute_force(problem, budget).energy_j, rel=1e-12)


def test_placement_is_re_solved_when_compression_frees_on_chip_room():
    # two groups of 60 B, on-chip room 85 B: dense, only one fits; compressing A to 20 B lets both fit
    hot_a, hot_b = item(60, 1e8), item(60, 9e7)
    problem = Problem(
        ("a", "b"),
        ((Option("keep", 0.0, (hot_a,)), Option("int4", 1.0, (item(20, 1e8 / 3),))), (Option("keep", 0.0, (hot_b,)),)),
        (),
        85,
    )
    dense, packed = evaluate(problem, (0, 0)), evaluate(problem, (1, 0))
    assert dense.resident_bytes == 60 and packed.resident_bytes == 80
    assert packed.offchip_bytes == 0  # both resident after compression
    assert dense.offchip_bytes == 9e7  # b streamed before
    found = greedy(problem, 1.0)
    assert found.choice == (1, 0) and found.energy_j == pytest.approx(packed.energy_j)


def test_negative_costs_never_buy_budget():
    options = (
        (Option("keep", 0.0, (item(10, 1e8),)), Option("x", -5.0, (item(10, 1e7),))),
        (Option("keep", 0.0, (item(10, 1e8),)), Option("y", 2.0, (item(10, 1e6),))),
    )
    problem = Problem(("a", "b"), options)
    for found in (greedy(problem, 1.0), exact(problem, 1.0)):
        assert found.choice == (1, 0) and found.wer_cost == 0.0


@pytest.mark.parametrize("budget", [0, -0.5, float("nan"), float("inf"), 150])
def test_bad_budgets_are_one_line_errors(budget):
    with pytest.raises(InputError, match="--wer-budget"):
        check_budget(budget)
    problem = Problem(("a",), ((Option("keep", 0.0, (item(1, 1.0),)),),))
    with pytest.raises(InputError):
        solve(problem, budget)


def test_greedy_records_its_moves_in_order():
    """Replaying the recorded moves rebuilds the choice and each move lowers the energy;
    `single_moves` lists every move from all-baseline, priced exactly when nothing is on-chip."""
    from weightwise.compress.planner import single_moves

    rng = random.Random(7)
    for _ in range(20):
        problem = random_problem(rng, rng.randint(2, 5), rng.randint(2, 4), onchip_bytes=rng.choice([0, 120]))
        result = greedy(problem, 8.0)
        assert len(result.order) == result.steps
        choice, energy = [0] * len(problem.groups), evaluate(problem, [0] * len(problem.groups)).energy_j
        for g, o in result.order:
            choice[g] = o
            now = evaluate(problem, choice).energy_j
            assert now < energy
            energy = now
        assert tuple(choice) == result.choice
        moves = single_moves(problem)
        assert len(moves) == sum(len(opts) - 1 for opts in problem.options)
        if result.order and problem.onchip_bytes == 0:  # streamed: a single move's saving is exact
            g, o = result.order[0]
            saved = {(mg, mo): s for mg, mo, s in moves}[(g, o)]
            base = evaluate(problem, [0] * len(problem.groups)).energy_j
            trial = [0] * len(problem.groups)
            trial[g] = o
            assert saved == pytest.approx(base - evaluate(problem, trial).energy_j, rel=1e-9)
