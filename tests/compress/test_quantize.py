"""Quantized modules: error within half a step, code ranges, storage by hand, state round trip,
tied embedding/projection stored once, and int8 Whisper transcripts close to fp32."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from weightwise.compress import Plan, Quant, compress_
from weightwise.compress.modules import rebuild
from weightwise.compress.quantize import QuantModule, quantize_handler
from weightwise.errors import InputError
from weightwise.evaluate import normalize, word_errors
from weightwise.profile.storage import module_storage

LINEARS = "re:.*\\.(q|k|v|out)_proj|.*\\.fc[12]|proj_out"


def weight_with_edge_rows(out_f: int = 6, in_f: int = 16) -> torch.Tensor:
    """Random weights plus an all-zero row (scale 0 case) and an all-positive row (min > 0)."""
    torch.manual_seed(0)
    w = torch.randn(out_f, in_f)
    w[1] = 0.0
    w[2] = w[2].abs() + 0.5
    return w


def linear_with(weight: torch.Tensor, bias: bool = True) -> nn.Linear:
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias)
    with torch.no_grad():
        lin.weight.copy_(weight)
    return lin


def expanded_scales(module: QuantModule) -> torch.Tensor:
    """Each weight element's scale, (rows, cols)."""
    if module.config.granularity == "group":
        return module.scales.repeat_interleave(module.config.group_size, dim=1)
    return module.scales.expand(module.rows, module.cols)  # (1, 1) or (rows, 1)


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("granularity", ["tensor", "channel", "group"])
@pytest.mark.parametrize("symmetric", [True, False])
def test_error_within_half_step_and_codes_in_range(bits, granularity, symmetric):
    w = weight_with_edge_rows()
    q = QuantModule.from_float(linear_with(w), "fc", Quant(bits, granularity, 8, symmetric))
    deq = q.weight
    assert torch.isfinite(deq).all() and torch.isfinite(q.scales).all()
    step = expanded_scales(q)
    assert ((w - deq).abs() <= step / 2 * (1 + 1e-5) + 1e-7).all()
    assert torch.equal(deq[1], torch.zeros(16))  # all-zero row stays exactly zero
    codes = q.codes.to(torch.int32)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        assert q.codes.dtype == torch.int8 and codes.abs().max() <= qmax
    else:
        assert q.codes.dtype == torch.uint8 and codes.max() <= 2**bits - 1
        assert int(q.zero_points.max()) <= 2**bits - 1
    x = torch.randn(3, 16)
    assert torch.equal(q(x), F.linear(x, deq, q.bias))


def test_fp16_is_a_cast():
    w = weight_with_edge_rows()
    q = QuantModule.from_float(linear_with(w), "fc", Quant(bits=16))
    assert q.codes.dtype == torch.float16 and torch.equal(q.weight, w.half().float())


def test_conv_and_embedding_compute_with_dequantized_weight():
    torch.manual_seed(1)
    conv = nn.Conv1d(4, 6, 3, stride=2, padding=1)
    q = QuantModule.from_float(conv, "conv", Quant(4, "group", 4, False))  # (6, 4*3): 3 groups
    assert q.scales.shape == (6, 3) and q.weight.shape == conv.weight.shape
    x = torch.randn(2, 4, 9)
    assert torch.equal(q(x), F.conv1d(x, q.weight, conv.bias, stride=2, padding=1))
    assert q.stride == (2,) and q(x).shape == conv(x).shape
    emb = nn.Embedding(10, 8)
    qe = QuantModule.from_float(emb, "emb", Quant(8, "channel"))
    ids = torch.tensor([[1, 5, 9]])
    assert torch.equal(qe(ids), F.embedding(ids, qe.weight)) and qe.weightwise_macs(ids, qe(ids)) == 0


@pytest.mark.parametrize(
    "config, weight_bytes, dtype",
    [
        (Quant(8, "channel", 128, True), 8 * 16 + 4 * 8, "int8"),  # codes + one fp32 scale per row
        (Quant(8, "tensor", 128, False), 8 * 16 + 4 + 1, "int8"),  # + one 1-byte zero point
        (Quant(4, "group", 8, True), 8 * 16 // 2 + 4 * 16, "int4"),  # 16 groups of 8
        (Quant(4, "group", 8, False), 8 * 16 // 2 + 4 * 16 + 16 // 2, "int4"),  # 4-bit zero points
        (Quant(4, "channel", 8, False), 8 * 16 // 2 + 4 * 8 + 4, "int4"),
        (Quant(16), 8 * 16 * 2, "fp16"),
    ],
)
def test_storage_bytes_by_hand(config, weight_bytes, dtype):
    q = QuantModule.from_float(nn.Linear(16, 8), "fc", config)
    st = module_storage(q)
    assert st["weight"].nbytes == weight_bytes and st["weight"].dtype == dtype
    assert st["weight"].shape == (8, 16) and st["bias"].nbytes == 8 * 4
    assert st["weight"].key == id(q.codes)


def test_int4_odd_count_rounds_up():
    q = QuantModule.from_float(nn.Linear(3, 3, bias=False), "fc", Quant(4, "tensor"))
    assert module_storage(q)["weight"].nbytes == math.ceil(9 / 2) + 4 and "bias" not in module_storage(q)


def test_group_size_must_divide_inputs():
    net = nn.Sequential()
    net.add_module("fc", nn.Linear(12, 4))
    with pytest.raises(InputError, match="fc: quant group_size 8"):
        quantize_handler(net, ["fc"], Quant(8, "group", 8), None)


@pytest.mark.parametrize(
    "module, config",
    [
        (nn.Linear(16, 8), Quant(8, "channel", 128, True)),
        (nn.Linear(16, 8), Quant(4, "group", 4, False)),
        (nn.Conv1d(4, 6, 3, padding=1), Quant(8, "tensor", 128, False)),
        (nn.Embedding(10, 8), Quant(16)),
    ],
)
def test_state_dict_round_trip_is_bit_identical(module, config):
    q = QuantModule.from_float(module, "m", config)
    again = rebuild(q.kind, copy.deepcopy(q.spec()))
    again.load_state_dict(q.state_dict())
    state, state2 = q.state_dict(), again.state_dict()
    assert set(state) == set(state2) and all(torch.equal(state[k], state2[k]) for k in state)
    assert "weight" not in state  # the float cache is not saved
    assert torch.equal(q.weight, again.weight)
    assert torch.equal(q.state_dict()["codes"], q.codes) and q.codes.dtype != torch.float32


@pytest.fixture(scope="module")
def base_model():
    """Our own whisper-tiny.en (the session `tiny_model` is shared: never compressed)."""
    from weightwise.models import load_model

    return load_model("whisper-tiny.en")


def fresh(base):
    """A deep copy of `base` to compress (tied weights stay tied in the copy)."""
    from weightwise.models import WhisperASR

    return WhisperASR(copy.deepcopy(base.network), base.tokenizer, base.tokens, base.info)


def test_tied_embedding_and_projection_quantized_once(base_model, sample_audio):
    from weightwise.decode import transcribe
    from weightwise.profile.trace import Tracer

    model = fresh(base_model)
    compress_(
        model, Plan.from_dict({"rules": [{"match": ["model.decoder.embed_tokens", "proj_out"], "quant": {"bits": 8}}]})
    )
    emb, proj = model.network.model.decoder.embed_tokens, model.network.proj_out
    assert isinstance(emb, QuantModule) and isinstance(proj, QuantModule)
    assert emb.codes is proj.codes and emb.scales is proj.scales and proj.tie == "model.decoder.embed_tokens"
    assert module_storage(emb)["weight"].key == module_storage(proj)["weight"].key
    tracer = Tracer(model.network)
    with tracer:
        transcribe(model, sample_audio[0][1], observer=tracer)
    trace = tracer.result("tiny", "fp32", use_cache=True)
    table = [t for t in trace.tensors if t.name.endswith(("embed_tokens.weight", "proj_out.weight"))]
    assert len(table) == 1 and table[0].dtype == "int8"
    assert set(table[0].users) == {"model.decoder.embed_tokens", "proj_out"}
    assert table[0].nbytes == 51864 * 384 + 4 * 51864


def test_one_of_a_tied_pair_unties_it(base_model):
    model = fresh(base_model)
    original = model.network.model.decoder.embed_tokens.weight
    compress_(model, Plan.from_dict({"rules": [{"match": "proj_out", "quant": {"bits": 8}}]}))
    emb = model.network.model.decoder.embed_tokens
    assert isinstance(emb, nn.Embedding) and emb.weight is original and emb.weight.dtype == torch.float32
    assert module_storage(model.network.proj_out)["weight"].key != module_storage(emb)["weight"].key


def _wer(model, sample_audio) -> float:
    from weightwise.decode import transcribe

    refs = [normalize(utt.text) for utt, _ in sample_audio]
    return word_errors(refs, [normalize(transcribe(model, audio).text) for _, audio in sample_audio]).wer


@pytest.mark.slow
def test_int8_per_channel_linears_keep_wer(base_model, sample_audio, tiny_greedy):
    model = fresh(base_model)
    compress_(model, Plan.from_dict({"rules": [{"match": LINEARS, "quant": {"bits": 8}}]}))
    n_quant = sum(isinstance(m, QuantModule) for m in model.network.modules())
    assert n_quant == 4 * 6 + 4 * 10 + 1  # encoder, decoder (self + cross attention), proj_out
    refs = [normalize(utt.text) for utt, _ in sample_audio]
    fp32 = word_errors(refs, [normalize(tiny_greedy[utt.id].text) for utt, _ in sample_audio]).wer
    assert _wer(model, sample_audio) <= fp32 + 0.05
