"""benchmarks/paired_wer.py: the paired WER increase between two eval outputs, as the closed loop gates it."""

from __future__ import annotations

import json
import math
from pathlib import Path


def _eval(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text(json.dumps({"utterances": [{"id": i, "ref": r, "hyp": h} for i, r, h in rows]}))
    return path


REFS = [("u1", "the cat sat on the mat"), ("u2", "a dog ran"), ("u3", "birds sing at dawn"), ("u4", "")]


def test_increase_and_standard_error_match_a_hand_count(benchmark_script, tmp_path, capsys):
    base = _eval(
        tmp_path / "a.json",
        [(i, r, r) for i, r in REFS[:2]] + [("u3", REFS[2][1], "birds sing at noon")] + [("u4", "", "uh")],
    )
    hyps = {"u1": "the cat sat on a mat", "u2": "a dog ran away fast", "u3": "birds sing at noon", "u4": ""}
    other = _eval(tmp_path / "b.json", [(i, r, hyps[i]) for i, r in REFS])
    assert benchmark_script("paired_wer").main([str(base), str(other)]) == 0
    line = capsys.readouterr().out.strip()
    # per utterance (u4 has no reference words: skipped): errors 0/0/1 -> 1/2/1, words 6/3/4
    diffs, words = [1, 2, 0], [6, 3, 4]
    delta = sum(diffs) / sum(words)
    se = math.sqrt(3 / 2 * sum((d - delta * w) ** 2 for d, w in zip(diffs, words, strict=True))) / sum(words)
    assert line.startswith("3 utterances, 13 words: WER 7.69% -> 30.77%")
    assert f"increase {100 * delta:+.2f} points (standard error {100 * se:.2f}," in line
    assert f"upper bound at 0.9: {100 * (delta + 1.2815515655446004 * se):+.2f})" in line


def test_other_utterances_or_a_broken_file_is_one_line_and_exit_2(benchmark_script, tmp_path, capsys):
    base = _eval(tmp_path / "a.json", [(i, r, r) for i, r in REFS])
    fewer = _eval(tmp_path / "b.json", [(i, r, r) for i, r in REFS[:3]])
    broken = tmp_path / "c.json"
    broken.write_text("{not json")
    for other, words in ((fewer, "not the same utterances"), (broken, "not a weightwise eval output")):
        assert benchmark_script("paired_wer").main([str(base), str(other)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err and str(other) in err
