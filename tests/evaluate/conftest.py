"""One real evaluation of tiny.en on the bundled samples, shared by the evaluate/peer tests."""

from __future__ import annotations

import psutil
import pytest


@pytest.fixture(scope="session")
def tiny_eval(tiny_model, samples):
    """(EvalResult, RSS in MiB measured just before evaluate started)."""
    from weightwise.evaluate import evaluate

    rss_before_mb = psutil.Process().memory_info().rss / 2**20
    return evaluate(tiny_model, samples), rss_before_mb
