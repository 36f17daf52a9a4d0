"""Benchmark report: Pareto front by hand, self-contained HTML, Markdown with images, bad input."""

import base64
import json
import re

import pytest

from weightwise.cli import main
from weightwise.report.bench_report import pareto_front, write_report


def row(system, precision, noise, snr, wer, energy, components=None):
    return {"cell": json.dumps([system, precision, noise, snr]), "system": system, "model": "m",
            "precision": precision, "plan": None, "noise": noise, "snr_db": snr, "wer": wer, "rtf": 0.1,
            "energy_j_per_audio_s": energy, "model_bytes": 10, "peak_rss_mb": 1.0,
            "components": components or {"encoder": 0.5, "decoder": 0.5}}


@pytest.fixture
def results(tmp_path):
    rows = [row("weightwise", "fp32", None, None, 0.10, 0.020), row("weightwise", "int8", None, None, 0.12, 0.006),
            row("weightwise", "fp16", None, None, 0.11, 0.010), row("weightwise", "fp32", "white", 10.0, 0.2, 0.02),
            row("weightwise", "fp32", "white", 0.0, 0.5, 0.02), row("faster-whisper", "int8", None, None, 0.13, None)]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_pareto_front_by_hand():
    points = [(20.0, 10.0, "fp32"), (6.0, 12.0, "int8"), (10.0, 11.0, "fp16"), (15.0, 13.0, "bad")]
    # "bad" costs more than fp16 and has a higher WER: dominated
    assert [p[2] for p in pareto_front(points)] == ["int8", "fp16", "fp32"]


def test_html_is_self_contained(results, tmp_path):
    out = write_report(results, tmp_path / "report.html")
    text = out.read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", text)
    assert len(images) == 3 and all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)
    assert "http" not in text.replace("http-equiv", "")  # nothing fetched from elsewhere
    assert text.count("<tr>") == 1 + 6


def test_markdown_with_images(results, tmp_path):
    out = write_report(results, tmp_path / "report.md")
    text = out.read_text()
    assert text.count("![") == 3 and (tmp_path / "report_fig0.png").read_bytes()[:4] == b"\x89PNG"
    assert text.count("| weightwise |") == 5


def test_cli_report_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "r.html")]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"cell": 1}\nnot json\n')
    assert main(["report", str(bad), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "bad.jsonl:2" in err[1]
