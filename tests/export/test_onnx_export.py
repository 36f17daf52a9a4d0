"""ONNX export -> ONNX Runtime -> our decode: the same transcripts as our torch runtime, the plan's
low-bit weights written as MatMulNBits from our own codes (not re-quantized by ONNX Runtime)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from weightwise.compress import Plan, Quant, compress_
from weightwise.compress.packed import pack_
from weightwise.compress.quantize import QuantModule
from weightwise.decode import DecodingOptions, transcribe
from weightwise.export.graph import OPSET
from weightwise.export.weights import Graph, linear
from weightwise.models.onnx_engine import MANIFEST_NAME, load_onnx_export

PLANS = Path(__file__).resolve().parents[2] / "benchmarks" / "plans"

#: A MatMulNBits layer vs our simulated QuantModule, per output row relative to the row's norm:
#: both dequantize the same codes to fp32 and sum in fp32, in different orders (K <= 1536 terms:
#: ~1e-6 measured); 1e-4 leaves room for other summation orders, and is 100x below int4's own error.
SIMULATED_TOLERANCE = 1e-4
#: vs our packed kernel (bf16 activations and scales, compress/packed.py): its own stated tolerance,
#: 1% plus 15% of the error that quantization itself makes (tests/compress/test_packed.py).
PACKED_TOLERANCE, OF_QUANT_ERROR = 0.01, 0.15


def _relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    return float(((approx - exact).norm(dim=-1) / exact.norm(dim=-1)).max())


def _run_layer(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """One layer as `weightwise.export.weights.linear` writes it, run by ONNX Runtime."""
    graph = Graph()
    y, _ = linear(graph, "x", module, "layer")
    graph.nodes.append(onnx.helper.make_node("Identity", [y], ["y"]))
    value = onnx.helper.make_tensor_value_info
    body = onnx.helper.make_graph(
        graph.nodes,
        "layer",
        [value("x", onnx.TensorProto.FLOAT, [None, None, module.cols])],
        [value("y", onnx.TensorProto.FLOAT, [None, None, module.rows])],
        list(graph.initializers.values()),
    )
    opsets = [onnx.helper.make_opsetid("", OPSET), onnx.helper.make_opsetid("com.microsoft", 1)]
    session = ort.InferenceSession(onnx.helper.make_model(body, opset_imports=opsets).SerializeToString())
    return session.run(None, {"x": x})[0]


CONFIGS = [Quant(4, "group", 64), Quant(4, "group", 32, symmetric=False), Quant(8, "channel")]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"int{c.bits}-{c.granularity}{c.group_size}-{c.symmetric}")
@pytest.mark.parametrize("name", ["fc1", "fc2"])
def test_quantized_layer_in_onnx_matches_simulated_and_packed(tiny_model, name, config):
    dense = getattr(tiny_model.network.model.decoder.layers[1], name)
    simulated = QuantModule.from_float(dense, name, config)
    net = torch.nn.Sequential(copy.deepcopy(simulated))
    assert pack_(net) == 1
    torch.manual_seed(0)
    x = torch.randn(2, 3, simulated.cols)
    with torch.no_grad():
        exact, sim, packed = dense(x), simulated(x), net[0](x)
    ours = torch.from_numpy(_run_layer(simulated, x.numpy()))
    assert _relative_error(ours, sim) < SIMULATED_TOLERANCE
    assert _relative_error(ours, packed) < PACKED_TOLERANCE + OF_QUANT_ERROR * _relative_error(sim, exact)
    assert _relative_error(ours, exact) > 10 * SIMULATED_TOLERANCE  # quantized indeed, not the float weight


@pytest.mark.slow  # ~12 s on 2 idle cores: 10 transcriptions
def test_fp32_export_transcribes_the_samples_as_our_runtime(fp32_export, tiny_model, sample_audio):
    model = load_onnx_export(fp32_export, threads=1)
    for utt, samples in sample_audio:
        ours, exported = transcribe(tiny_model, samples), transcribe(model, samples, file_id=utt.id)
        assert exported.text == ours.text and exported.tokens == ours.tokens, utt.id
    beam = DecodingOptions(beam_size=3)  # the cache reordered between beams
    samples = sample_audio[1][1]
    assert transcribe(model, samples, beam).tokens == transcribe(tiny_model, samples, beam).tokens


@pytest.fixture(scope="module")
def int4_model(tiny_model):
    """Our runtime by the same plan (simulated modules: the numbers the export must equal)."""
    model = copy.deepcopy(tiny_model)
    compress_(model, Plan.from_json(PLANS / "int4-group64.json"))
    return model


@pytest.mark.slow  # the plan's export (~8 s) and 4 transcriptions
def test_int4_export_runs_the_plan_codes(int4_export, fp32_export, int4_model, sample_audio):
    manifest = json.loads((int4_export / MANIFEST_NAME).read_text())
    decoder = onnx.load(int4_export / "decoder.onnx")
    ops = [node.op_type for node in decoder.graph.node]
    layers = 4 * 6  # 4 decoder layers x (q, k, v, out of self-attention; q, out of cross-attention)
    assert ops.count("MatMulNBits") == layers + 4 * 2 + 1  # + fc1, fc2 per layer + the tied projection
    assert ops.count("GatherBlockQuantized") == 1 and "MatMul" in ops  # attention scores stay float
    # the tied table is stored once, as 4-bit codes: the file is about int4's size, not fp32's
    assert (int4_export / "decoder.onnx").stat().st_size < 0.2 * (fp32_export / "decoder.onnx").stat().st_size
    fc1 = manifest["tensors"]["model.decoder.layers.0.fc1"]
    assert fc1["precision"] == "int4-group64-sym" and fc1["onnx_op"].startswith("MatMulNBits(bits=4")
    codes = next(t for t in decoder.graph.initializer if t.name == "model.decoder.layers.0.fc1.qweight")
    module = int4_model.network.model.decoder.layers[0].fc1
    unpacked = np.stack([onnx.numpy_helper.to_array(codes) & 15, onnx.numpy_helper.to_array(codes) >> 4], -1)
    assert np.array_equal(unpacked.reshape(module.rows, module.cols).astype(int) - 8, module.codes.numpy())
    model = load_onnx_export(int4_export, threads=1)
    for utt, samples in sample_audio[1:3]:  # one LibriSpeech, one ARCTIC utterance
        assert transcribe(model, samples).tokens == transcribe(int4_model, samples).tokens, utt.id
