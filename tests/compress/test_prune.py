"""Pruned modules: exact per-row sparsity, N:M groups, zeroed channels, storage and MACs by hand,
state round trip, tied tables pruned once, and the CSP fallback for non-Linear modules."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from weightwise.compress import Prune
from weightwise.compress.modules import rebuild
from weightwise.compress.prune import SparseModule, magnitude_mask, prune_handler
from weightwise.compress.quantize import flat_weight
from weightwise.errors import InputError
from weightwise.profile.storage import module_storage


def magnitude(module: nn.Module, config: Prune) -> SparseModule:
    return SparseModule.from_mask(module, "m", config, magnitude_mask(flat_weight(module), config))


def seeded_linear(in_f: int = 40, out_f: int = 10, bias: bool = True) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(in_f, out_f, bias=bias)


def test_unstructured_exact_per_row_and_largest_kept():
    lin = seeded_linear()
    sp = magnitude(lin, Prune(0.3))
    w, dense = lin.weight.detach(), sp.weight
    zeros = (dense == 0).sum(1)
    assert torch.equal(zeros, torch.full((10,), math.floor(0.3 * 40)))  # 12 per row, 120 overall
    assert int((dense == 0).sum()) == 120
    kept = dense != 0
    assert torch.equal(dense[kept], w[kept])  # kept weights unchanged
    for row in range(10):
        assert w[row][kept[row]].abs().min() >= w[row][~kept[row]].abs().max()
    x = torch.randn(4, 40)
    assert torch.equal(sp(x), F.linear(x, dense, lin.bias))


@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (2, 8)])
def test_nm_pattern_holds_in_every_group(n, m):
    lin = seeded_linear(16, 8)
    sp = magnitude(lin, Prune(0.9, f"{n}:{m}"))  # sparsity is ignored for N:M
    groups = (sp.weight != 0).reshape(8, 16 // m, m).sum(-1)
    assert torch.equal(groups, torch.full_like(groups, n))
    assert sp.indices.dtype == torch.int8 and int(sp.indices.max()) < m


def test_nm_needs_divisible_inputs():
    net = nn.Sequential()
    net.add_module("odd", nn.Linear(10, 4))
    with pytest.raises(InputError, match="odd: 10 input elements .* M=4"):
        prune_handler(net, ["odd"], Prune(pattern="2:4"), None)


def test_channel_pruning_zeroes_smallest_norm_channels():
    lin = seeded_linear(16, 8)
    with torch.no_grad():
        lin.weight[[2, 5]] *= 0.01  # the two weakest channels
    sp = magnitude(lin, Prune(0.25, "channel"))
    out = sp(torch.randn(3, 16))
    assert out.shape == (3, 8) and torch.equal(out[:, [2, 5]], torch.zeros(3, 2))  # bias dropped too
    assert torch.equal(sp.channels, torch.tensor([0, 1, 3, 4, 6, 7], dtype=torch.int32))
    assert sp.weightwise_macs(None, out) == 3 * 6 * 16  # dropped channels computed by nobody


def test_storage_and_macs_by_hand():
    unstructured = module_storage(magnitude(seeded_linear(40, 10), Prune(0.3)))
    nnz = 10 * 28
    assert unstructured["weight"].nbytes == nnz * 4 + nnz * 2 + 4 * 10 + 4  # values, columns, row ptrs
    assert unstructured["weight"].format == "csr" and unstructured["bias"].nbytes == 40
    nm = magnitude(seeded_linear(16, 8, bias=False), Prune(pattern="2:4"))
    assert module_storage(nm)["weight"].nbytes == 64 * 4 + math.ceil(32 * 3 / 8)  # 3 bits per group
    assert nm.weightwise_macs(None, torch.zeros(5, 8)) == 5 * 8 * 16 // 2  # dense x density
    channel = module_storage(magnitude(seeded_linear(16, 8), Prune(0.25, "channel")))
    assert channel["weight"].nbytes == 6 * 16 * 4 + 6 * 4 and channel["bias"].nbytes == 6 * 4
    assert channel["weight"].shape == (8, 16) and channel["weight"].dtype == "fp32"


def test_conv_and_embedding_forward_with_sparse_weight():
    torch.manual_seed(2)
    conv = nn.Conv1d(4, 6, 3, padding=1)
    sp = magnitude(conv, Prune(0.5))
    assert int((sp.weight == 0).sum()) == 6 * 6  # floor(0.5 * 12) per output channel
    x = torch.randn(2, 4, 7)
    assert torch.equal(sp(x), F.conv1d(x, sp.weight, conv.bias, padding=1))
    emb = magnitude(nn.Embedding(10, 8), Prune(0.25))
    ids = torch.tensor([[0, 3, 9]])
    assert torch.equal(emb(ids), F.embedding(ids, emb.weight))
    st = module_storage(emb)["weight"]
    assert emb.weightwise_bytes_read("weight", st, ids, emb(ids)) == round(3 * 8 * st.bytes_per_element)


@pytest.mark.parametrize("config", [Prune(0.3), Prune(pattern="2:4"), Prune(0.25, "channel")])
def test_state_dict_round_trip_is_bit_identical(config):
    sp = magnitude(seeded_linear(16, 8), config)
    again = rebuild(sp.kind, copy.deepcopy(sp.spec()))
    again.load_state_dict(sp.state_dict())
    a, b = sp.state_dict(), again.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(sp.weight, again.weight) and torch.equal(sp.effective_bias, again.effective_bias)


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(12, 8)
        self.proj = nn.Linear(8, 12, bias=False)
        self.proj.weight = self.emb.weight


def test_tied_table_pruned_once():
    torch.manual_seed(3)
    net = Tied()
    prune_handler(net, ["emb", "proj"], Prune(0.5), None)
    assert isinstance(net.proj, SparseModule) and net.proj.values is net.emb.values
    assert module_storage(net.emb)["weight"].key == module_storage(net.proj)["weight"].key
    assert torch.equal(net.proj(torch.eye(8)), net.emb.weight.T)


class FakeContext:
    def __init__(self, inputs):
        self.asked, self._inputs = [], inputs

    def inputs(self, names):
        self.asked.append(list(names))
        return {n: self._inputs[n] for n in names}


def test_csp_falls_back_to_magnitude_for_conv_with_a_warning():
    torch.manual_seed(4)
    net = nn.Sequential()
    net.add_module("conv", nn.Conv1d(4, 6, 3))
    net.add_module("fc", nn.Linear(8, 4))
    expected = magnitude(net.conv, Prune(0.5)).weight
    context = FakeContext({"fc": torch.randn(50, 8)})
    with pytest.warns(UserWarning, match="csp applies to Linear layers only: conv"):
        prune_handler(net, ["conv", "fc"], Prune(0.5, method="csp"), context)
    assert context.asked == [["fc"]] and torch.equal(net.conv.weight, expected)
    assert isinstance(net.fc, SparseModule) and int((net.fc.weight == 0).sum()) == 4 * 4
