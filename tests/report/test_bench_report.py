"""Benchmark report: Pareto front by hand, self-contained HTML, Markdown with images, bad input."""

import base64
import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from weightwise.bench.row import ROW_VERSION, BenchRow
from weightwise.cli import main
from weightwise.report.bench_report import load_rows, pareto_front, summary_table, wer_table, write_report

REPO = Path(__file__).resolve().parents[2]


def row(system, precision, noise, snr, wer, energy, components=None, rtf=0.1):
    return BenchRow(
        system,
        "m",
        precision,
        None,
        noise,
        snr,
        wer,
        rtf=rtf,
        energy_j_per_audio_s=energy,
        model_bytes=10,
        peak_rss_mb=1.0,
        components=components or {"encoder": 0.5, "decoder": 0.5},
    ).to_dict()


@pytest.fixture
def results(tmp_path):
    rows = [
        row("weightwise", "fp32", None, None, 0.10, 0.020),
        row("weightwise", "int8", None, None, 0.12, 0.006),
        row("weightwise", "fp16", None, None, 0.11, 0.010),
        row("weightwise", "fp32", "white", 10.0, 0.2, 0.02),
        row("weightwise", "fp32", "noise/street/manifest.jsonl", 0.0, 0.5, 0.02),
        row("faster-whisper", "int8", None, None, 0.13, None, rtf=0.4),
    ]
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
    # summary (header + 4 variants), WER by condition (header + 4), all cells (header + 6)
    assert text.count("<tr>") == 5 + 5 + 7
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


def test_summary_and_wer_tables_by_hand(results):
    rows = load_rows(results)
    header, body = wer_table(rows)
    assert header == ["variant", "clean", "street 0 dB", "white 10 dB"]  # a manifest is named by its folder
    assert body[0] == ["weightwise m fp32", "10.00", "50.00", "20.00"]
    assert body[1] == ["weightwise m int8", "12.00", "", ""]
    header, body = summary_table(rows)
    line = dict(zip(header, body[0], strict=True))
    assert line["mean noisy WER %"] == "35.00" and line["cells"] == "3" and line["energy vs fp32"] == ""
    int8 = dict(zip(header, body[1], strict=True))
    assert int8["mJ/audio-s"] == "6" and int8["energy vs fp32"] == "0.30x" and int8["RTF vs fp32"] == "1.00x"
    assert int8["RTF vs peer"] == "0.25x" and line["RTF vs peer"] == ""  # no float32 peer row for fp32
    peer = dict(zip(header, body[3], strict=True))
    assert peer["variant"] == "faster-whisper m int8" and peer["mJ/audio-s"] == "" and peer["energy vs fp32"] == ""


def test_markdown_with_images(results, tmp_path):
    out = write_report(results, tmp_path / "report.md")
    text = out.read_text()
    assert text.count("![") == 3 and (tmp_path / "report_fig0.png").read_bytes()[:4] == b"\x89PNG"
    assert text.count("| weightwise |") == 5


def test_cli_report_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "r.html")]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(row("weightwise", "fp32", None, None, 0.1, 0.02)) + "\nnot json\n")
    assert main(["report", str(bad), "-o", str(tmp_path / "r.html")]) == 2
    bad.write_text('{"cell": 1, "wer": 0.1}\n')
    assert main(["report", str(bad), "-o", str(tmp_path / "r.html")]) == 2
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(row("weightwise", "fp32", None, None, 0.1, 0.02)) + "\n")
    assert main(["report", str(good), "-o", str(tmp_path / "r.pdf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and "bad.jsonl:2: not a JSON line" in err[1]
    assert "bad.jsonl:1: not a bench row (missing system, model, precision, noise, snr_db)" in err[2]
    assert "r.pdf" in err[3] and not (tmp_path / "r.html").exists()


def test_committed_version_0_results_render_as_committed(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the report names the results file as given
    out = write_report("benchmarks/results/bench/full_matrix.jsonl", tmp_path / "full_matrix.md")
    assert out.read_text() == (REPO / "benchmarks" / "results" / "bench" / "full_matrix.md").read_text()


def test_a_cell_twice_is_refused_not_counted_twice(results, tmp_path, capsys):
    first = results.read_text().splitlines(keepends=True)[0]
    with open(results, "a") as handle:
        handle.write(first)  # e.g. two benches that ran on one file
    assert main(["report", str(results), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f'weightwise: error: {results}:7: cell ["weightwise", "m", "fp32", null, null, null] is already '
        "on line 1 (two benches wrote this file?); keep one of the two lines"
    ]
    assert not (tmp_path / "r.html").exists()


def test_rows_of_older_versions_together_and_a_torn_tail(results, tmp_path):
    old = {k: v for k, v in json.loads(results.read_text().splitlines()[0]).items() if k not in ("version",)}
    lines = results.read_text().splitlines(keepends=True)[1:]
    results.write_text(json.dumps(old) + "\n" + "".join(lines) + '{"cell": "[\\"weightwise\\", \\"m')
    rows = load_rows(results)
    assert [r.version for r in rows] == [0, ROW_VERSION, ROW_VERSION, ROW_VERSION, ROW_VERSION, ROW_VERSION]
    text = write_report(results, tmp_path / "report.md").read_text()
    assert text.count("| weightwise |") == 5  # the torn last write (a bench still running) is left out


def test_rows_without_references_render_without_wer(tmp_path):
    path = tmp_path / "untranscribed.jsonl"  # a bench on audio without reference texts
    path.write_text(
        json.dumps(row("weightwise", "fp32", None, None, None, 0.02))
        + "\n"
        + json.dumps(row("weightwise", "fp32", "white", 10.0, None, 0.02))
        + "\n"
    )
    text = write_report(path, tmp_path / "report.md").read_text()
    assert "| weightwise m fp32 |  |  | 20 |" in text  # no WER, the energy still there


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = Path(__file__).resolve().parents[2] / "benchmarks" / "screenshot_report.sh"


@pytest.mark.skipif(BROWSER is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium(results, tmp_path):
    page = write_report(results, tmp_path / "report.html")
    png = tmp_path / "report.png"
    subprocess.run(["bash", str(SCREENSHOT), str(page), str(png)], check=True, timeout=180, capture_output=True)
    from matplotlib.image import imread

    pixels = imread(png)[..., :3]  # RGB in 0..1
    assert pixels.shape[:2] == (2600, 1280)
    matplotlib_blue = np.array([0x1F, 0x77, 0xB4]) / 255  # "C0": fp32 points and decoder bars
    drawn = (np.abs(pixels - matplotlib_blue) < 0.02).all(axis=-1).sum()
    assert drawn > 200  # the embedded PNG figures were decoded and painted, not broken-image icons


def test_the_report_marks_rows_run_on_real_kernels(tmp_path):
    def planned(wer, plan, kernels):
        base = BenchRow.from_dict(row("weightwise", "fp32", None, None, wer, 0.02))
        return dataclasses.replace(base, plan=plan, kernels=kernels).to_dict()

    rows = [
        planned(0.10, "int4", "packed"),
        planned(0.11, "int8-simulated", "simulated"),
        planned(0.12, "old", None),  # from before rows recorded it
        row("weightwise", "int8", None, None, 0.13, 0.01),
    ]
    path = tmp_path / "k.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    header, body = summary_table(load_rows(path))
    real = [dict(zip(header, line, strict=True))["real kernels"] for line in body]
    assert real == ["yes (packed)", "no (simulated)", "not recorded", "yes (int8)"]
    text = write_report(path, tmp_path / "k.md").read_text()
    assert "| packed |" in text and "| simulated |" in text
