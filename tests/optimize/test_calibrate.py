"""alpha (WER points per nat of KL) fitted on calibration points: pooled, saturated points left out."""

from weightwise.optimize.calibrate import SATURATED_POINTS, AlphaSearch, CalibPoint, fit_alpha


def test_alpha_is_the_pooled_ratio_of_the_unsaturated_points():
    points = [
        CalibPoint("uniform:int8", 0.01, 0.2),
        CalibPoint("uniform:int4", 0.1, 3.0),
        CalibPoint("uniform:prune50", 7.0, SATURATED_POINTS + 80.0),  # the model no longer transcribes
    ]
    assert abs(fit_alpha(points) - 3.2 / 0.11) < 1e-9


def test_no_alpha_when_nothing_moved_or_everything_saturated():
    assert fit_alpha([CalibPoint("a", 0.01, 0.0)]) is None
    assert fit_alpha([CalibPoint("a", 5.0, 90.0)]) is None


def test_the_search_brackets_the_budget():
    search = AlphaSearch(10.0)
    assert search.update(2.0, 0.5) == 40.0  # overshot: more cautious
    assert search.update(0.3, 0.5) == 20.0  # held: bisect between 10 and 40


def test_paired_interval_matches_a_bootstrap_over_utterances():
    """The standard error of the WER increase is the spread of the corpus-level increase when
    utterances are resampled (a bootstrap, computed here independently), and pairing removes what
    both models share: the same errors in both give zero, however many."""
    import random

    from weightwise.optimize.calibrate import paired_delta, z_of

    rng = random.Random(0)
    words = [rng.randint(5, 40) for _ in range(200)]
    float_errors = [rng.randint(0, w // 3) for w in words]
    errors = [f + rng.choice((0, 0, 0, 1, 2, -1)) for f in float_errors]
    errors = [max(0, e) for e in errors]
    delta = paired_delta(errors, float_errors, words, z_of(0.9))
    assert delta.points == 100 * (sum(errors) - sum(float_errors)) / sum(words)
    boot = []
    for _ in range(2000):
        idx = [rng.randrange(len(words)) for _ in words]
        boot.append(100 * sum(errors[i] - float_errors[i] for i in idx) / sum(words[i] for i in idx))
    mean = sum(boot) / len(boot)
    sd = (sum((b - mean) ** 2 for b in boot) / (len(boot) - 1)) ** 0.5
    assert abs(delta.se_points - sd) < 0.1 * sd
    assert abs(delta.upper_points - (delta.points + 1.2816 * delta.se_points)) < 1e-3 * delta.se_points
    same = paired_delta(float_errors, float_errors, words, 1.28)
    assert same.points == 0 and same.se_points == 0 and same.upper_points == 0
    assert z_of(0.5) == 0


def test_utterance_errors_give_the_corpus_wer_and_refuse_mismatched_lists():
    import pytest

    from weightwise.optimize.calibrate import UtteranceErrors, paired_delta

    errs = UtteranceErrors((1, 0, 3), (10, 5, 5))
    assert errs.wer_points == 20.0
    assert errs.delta(None, 0.0).points == 20.0  # against a reference with no errors (pseudo-WER)
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_delta([1], [1, 2], [3, 4], 1.0)


def test_a_point_is_dominated_only_by_a_baseline_as_good_on_both_axes_and_better_on_one():
    from weightwise.optimize.report import dominated_by

    uniform = [
        {"name": "fp16", "wer": 0.140, "energy_j_per_audio_s": 12.0},
        {"name": "int8", "wer": 0.142, "energy_j_per_audio_s": 6.7},
        {"name": "int4", "wer": 0.250, "energy_j_per_audio_s": 4.5},
        {"name": "broken", "wer": None, "energy_j_per_audio_s": 1.0},
    ]
    assert dominated_by(0.142, 9.0, uniform) == ["int8"]  # same WER, more energy: the rerun's plan
    assert dominated_by(0.142, 6.7, uniform) == []  # equal on both: not dominated
    assert dominated_by(0.150, 1.6, uniform) == []
    assert dominated_by(0.260, 13.0, uniform) == ["fp16", "int8", "int4"]


def test_each_tuning_manifest_gets_its_own_paired_interval_and_the_pooled_one_is_unchanged():
    from weightwise.optimize.calibrate import UtteranceErrors, paired_delta

    base = UtteranceErrors((1, 0, 3, 2, 0), (10, 5, 5, 8, 6), ("a1", "b1", "a2", "b2", "a3"))
    plan = UtteranceErrors((2, 1, 3, 2, 4), (10, 5, 5, 8, 6), ("a1", "b1", "a2", "b2", "a3"))
    parts = (("A.jsonl", frozenset({"a1", "a2", "a3"})), ("B.jsonl", frozenset({"b1", "b2", "zz"})))
    delta = plan.delta(base, 1.28, parts)
    pooled = paired_delta(plan.errors, base.errors, plan.words, 1.28)
    assert (delta.points, delta.se_points, delta.upper_points) == (pooled.points, pooled.se_points, pooled.upper_points)
    a = paired_delta((2, 3, 4), (1, 3, 0), (10, 5, 6), 1.28)
    b = paired_delta((1, 2), (0, 2), (5, 8), 1.28)
    assert [s for s, _ in delta.parts] == ["A.jsonl", "B.jsonl"]
    assert delta.parts[0][1] == a and delta.parts[1][1] == b
    assert delta.parts_dict()["A.jsonl"] == {
        "points": a.points,
        "se_points": a.se_points,
        "upper_points": a.upper_points,
        "utterances": 3,
        "words": 21,
    }
    assert plan.delta(base, 1.28).parts == () and plan.delta(base, 1.28).parts_dict() is None
