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
