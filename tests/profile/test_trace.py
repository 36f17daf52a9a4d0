"""Tracer on a hand-built model: invocations, bytes, MACs and attention MACs computed by hand."""

import pytest
import torch
from torch import nn

from weightwise.profile.trace import Tracer


class ToyAttention(nn.Module):
    def forward(self, q, k, v):
        return nn.functional.scaled_dot_product_attention(q, k, v)


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3, padding=1)  # weight 24 floats = 96 B, bias 16 B
        self.emb = nn.Embedding(10, 4)  # 40 floats = 160 B
        self.norm = nn.LayerNorm(4)  # weight 16 B, bias 16 B
        self.fc = nn.Linear(4, 3)  # weight 48 B, bias 12 B
        self.proj = nn.Linear(4, 10, bias=False)
        self.proj.weight = self.emb.weight  # tied: stored once, read by two modules
        self.attn = ToyAttention()

    def forward(self, ids, x, q, k, v):
        self.conv(x)
        e = self.emb(ids)
        self.fc(self.norm(e))
        self.proj(e)
        self.attn(q, k, v)


@pytest.fixture
def trace():
    torch.manual_seed(0)
    model = Toy()
    ids, x = torch.tensor([[1, 2, 3]]), torch.randn(1, 2, 5)
    q, k, v = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 6)
    tracer = Tracer(model)
    with tracer:
        tracer.on_file("toy", 2.0)
        for _ in range(2):
            model(ids, x, q, k, v)
    return tracer.result("toy", "fp32", use_cache=True)


def by_name(trace):
    return {t.name: t for t in trace.tensors}


def test_tensor_count_and_tied_weight_stored_once(trace):
    names = set(by_name(trace))
    assert names == {
        "conv.weight",
        "conv.bias",
        "emb.weight",
        "norm.weight",
        "norm.bias",
        "fc.weight",
        "fc.bias",
    }  # proj.weight is emb.weight
    assert sum(t.nbytes for t in trace.tensors) == 96 + 16 + 160 + 16 + 16 + 48 + 12


def test_conv_counts(trace):
    conv = by_name(trace)["conv.weight"]
    # output 4 channels x 5 frames, each a dot product of 2 channels x 3 taps, per call; 2 calls
    assert (conv.calls, conv.bytes_read, conv.macs) == (2, 2 * 96, 2 * 20 * 6)
    assert by_name(trace)["conv.bias"].bytes_read == 2 * 16 and by_name(trace)["conv.bias"].macs == 0


def test_tied_embedding_and_projection(trace):
    emb = by_name(trace)["emb.weight"]
    # embedding: 3 rows of 4 floats (48 B) per call; projection: the whole table (160 B) per call
    assert emb.calls == 4
    assert emb.bytes_read == 2 * 48 + 2 * 160
    assert emb.macs == 2 * (3 * 10) * 4  # projection only: 30 outputs x 4 inputs per call
    assert emb.users == ("emb", "proj")


def test_linear_and_norm(trace):
    t = by_name(trace)
    assert (t["fc.weight"].calls, t["fc.weight"].bytes_read, t["fc.weight"].macs) == (2, 96, 2 * 9 * 4)
    assert t["fc.bias"].bytes_read == 24
    assert t["norm.weight"].macs == 2 * 12 and t["norm.bias"].macs == 0


def test_attention_macs_and_totals(trace):
    (op,) = trace.ops
    # batch*heads 2 x Lq 3 x Lk 5 x (d_k 4 + d_v 6), twice
    assert (op.module, op.calls, op.macs, op.mac_dtype) == ("attn", 2, 2 * 2 * 3 * 5 * 10, "fp32")
    assert trace.audio_s == 2.0 and trace.n_files == 1
    # inputs + outputs of weight-bearing modules per forward: conv 40+80, emb 24(int64 ids)+48,
    # norm 48+48, fc 48+36, proj 48+120
    assert trace.activation_bytes == 2 * (120 + 72 + 96 + 84 + 168)


def test_hooks_removed_after_exit():
    model = Toy()
    tracer = Tracer(model)
    with tracer:
        pass
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
