"""Peak RSS: counts a real allocation, and restarts from the current RSS after a reset."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from weightwise.evaluate.runtime import peak_rss_mb, reset_peak_rss, rss_mb


@pytest.mark.skipif(sys.platform != "linux", reason="VmHWM and clear_refs are Linux's")
def test_peak_rss_sees_an_allocation_and_resets():
    assert reset_peak_rss()
    before = peak_rss_mb()
    block = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
    assert peak_rss_mb() >= before + 250 and rss_mb() <= peak_rss_mb()
    del block
    assert reset_peak_rss()
    assert peak_rss_mb() < before + 100  # the freed block no longer counts


def test_host_names_the_cpu_and_the_threads_used():
    import os

    import torch

    from weightwise.evaluate.runtime import host

    found = host()
    assert found["cores"] == os.cpu_count() and found["threads"] == torch.get_num_threads()
    named = (
        re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        if Path("/proc/cpuinfo").is_file()
        else None
    )
    if named:
        assert found["cpu"].startswith(named.group(1).strip())
