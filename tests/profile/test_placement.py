"""0/1 knapsack placement: exact answers checked against brute force and by hand."""

import itertools
import random

from weightwise.profile.placement import knapsack


def brute_force(sizes, values, capacity):
    best = 0.0
    for r in range(len(sizes) + 1):
        for subset in itertools.combinations(range(len(sizes)), r):
            if sum(sizes[i] for i in subset) <= capacity:
                best = max(best, sum(values[i] for i in subset))
    return best


def test_hand_example():
    # capacity 7: {1, 2} (sizes 4+3, value 13) beats {0} (size 5, value 10)
    assert knapsack([5, 4, 3], [10.0, 7.0, 6.0], capacity=7) == [1, 2]


def test_item_larger_than_budget_is_never_placed():
    assert knapsack([100, 2], [1000.0, 1.0], capacity=50) == [1]


def test_zero_capacity_and_zero_value():
    assert knapsack([1, 2], [5.0, 6.0], capacity=0) == []
    assert knapsack([1, 2], [0.0, 6.0], capacity=10) == [1]


def test_matches_brute_force_on_random_instances():
    rng = random.Random(0)
    for _ in range(60):
        n = rng.randint(1, 9)
        sizes = [rng.randint(1, 40) for _ in range(n)]
        values = [rng.uniform(0, 10) for _ in range(n)]
        capacity = rng.randint(0, 120)
        chosen = knapsack(sizes, values, capacity)
        assert sum(sizes[i] for i in chosen) <= capacity
        assert abs(sum(values[i] for i in chosen) - brute_force(sizes, values, capacity)) < 1e-9


def test_coarse_buckets_still_respect_the_budget():
    rng = random.Random(1)
    sizes = [rng.randint(1000, 3_000_000) for _ in range(150)]
    values = [rng.uniform(0, 1) * s for s in sizes]
    capacity = 4 * 2**20
    chosen = knapsack(sizes, values, capacity, max_cells=512)
    assert chosen and sum(sizes[i] for i in chosen) <= capacity
