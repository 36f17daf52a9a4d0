"""One real evaluation of tiny.en on the bundled samples, shared by the evaluate/peer tests."""

from __future__ import annotations

import pytest

from weightwise.evaluate.runtime import peak_rss_mb, rss_mb


@pytest.fixture(scope="session")
def tiny_eval(tiny_model, samples):
    """(EvalResult, RSS in MiB measured just before evaluate started)."""
    from weightwise.evaluate import evaluate

    rss_before_mb = rss_mb() or peak_rss_mb()  # without /proc, the peak so far bounds it too
    return evaluate(tiny_model, samples), rss_before_mb
