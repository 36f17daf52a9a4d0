"""Exports of the real tiny.en weights, written once per session (each takes seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

PLANS = Path(__file__).resolve().parents[2] / "benchmarks" / "plans"


@pytest.fixture(scope="session")
def fp32_export(tmp_path_factory, weightwise_cache) -> Path:
    """whisper-tiny.en at fp32 as an ONNX export folder (encoder.onnx, decoder.onnx, manifest)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from weightwise.export import export_onnx

    return export_onnx("whisper-tiny.en", tmp_path_factory.mktemp("onnx") / "tiny-fp32").out_dir


@pytest.fixture(scope="session")
def int4_export(tmp_path_factory, weightwise_cache) -> Path:
    """whisper-tiny.en by the committed int4 group-64 plan (every layer linear, the tied table)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from weightwise.export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "tiny-int4"
    return export_onnx("whisper-tiny.en", out, plan=PLANS / "int4-group64.json").out_dir
