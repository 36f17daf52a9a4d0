"""export -> load -> transcribe in a fresh process: nothing an export needs lives only in the exporting
process (the folder alone gives the transcripts that the exporting process gets from it)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from weightwise.decode import transcribe
from weightwise.models.onnx_engine import load_onnx_export

EXPORTS = ["fp32_export", pytest.param("int4_export", marks=pytest.mark.slow)]  # int4: its export, ~8 s


@pytest.mark.parametrize("export", EXPORTS)
def test_export_transcribes_the_samples_in_a_fresh_process_as_in_process(
    export, request, sample_audio, tiny_greedy, tmp_path
):
    folder = request.getfixturevalue(export)
    files = [str(utt.audio_path) for utt, _ in sample_audio]
    argv = ["transcribe", "--engine", "onnxruntime", "--model", str(folder), "--threads", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "weightwise", *argv, "--out", str(tmp_path / "out.json"), *files],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    fresh = [row["text"] for row in json.loads((tmp_path / "out.json").read_text())["transcripts"]]
    names = [utt.audio_path.name for utt, _ in sample_audio]
    assert proc.stdout.splitlines() == [f"{name}\t{text}" for name, text in zip(names, fresh, strict=True)]
    model = load_onnx_export(folder, threads=1)
    in_process = [transcribe(model, samples, file_id=utt.id).text for utt, samples in sample_audio]
    assert fresh == in_process
    if export == "fp32_export":  # and what our torch runtime transcribes (the int4 plan: test_onnx_export.py)
        assert fresh == [tiny_greedy[utt.id].text for utt, _ in sample_audio]
