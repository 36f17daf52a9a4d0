"""An export runs through the same harness as our torch runtime: `eval` and `bench` with
`--engine onnxruntime` write the same JSON contract, the same transcripts and scores."""

from __future__ import annotations

import json

from weightwise.cli import main


def test_eval_engine_onnxruntime_writes_the_same_contract(fp32_export, tmp_path, capsys):
    common = ["--data", "samples", "--limit", "2", "--threads", "1"]
    assert main(["eval", "--model", "whisper-tiny.en", *common, "--out", str(tmp_path / "torch.json")]) == 0
    argv = ["eval", "--engine", "onnxruntime", "--model", str(fp32_export), *common]
    assert main([*argv, "--out", str(tmp_path / "onnx.json")]) == 0
    capsys.readouterr()
    torch_result, onnx_result = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("torch", "onnx"))
    assert set(onnx_result) == set(torch_result)
    assert (torch_result["engine"], onnx_result["engine"]) == ("torch", "onnxruntime")
    assert onnx_result["model"] == "whisper-tiny.en" and onnx_result["model_source"] == str(fp32_export)
    assert [u["hyp"] for u in onnx_result["utterances"]] == [u["hyp"] for u in torch_result["utterances"]]
    assert onnx_result["wer"] == torch_result["wer"] and onnx_result["normalizer"] == torch_result["normalizer"]
    assert onnx_result["rtf"] > 0 and onnx_result["decoding"] == torch_result["decoding"]


def test_bench_engine_onnxruntime_writes_rows_of_its_own_system(fp32_export, tmp_path, capsys):
    out = tmp_path / "bench.jsonl"
    argv = ["bench", "--engine", "onnxruntime", "--model", str(fp32_export), "--data", "samples", "--limit", "1"]
    assert main([*argv, "--peers", "", "--threads", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["system"] == "weightwise-onnxruntime" and row["model"] == str(fp32_export)
    assert row["wer"] == 0.0 and row["utterances"][0]["hyp"] == "He could wait no longer."
    assert row["energy_j_per_audio_s"] is None and "ONNX Runtime" in row["energy_note"]
