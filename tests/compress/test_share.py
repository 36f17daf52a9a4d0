"""Weight sharing: one stored tensor for a group, shared low-rank factors, unique storage, round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_model as load_state
from safetensors.torch import save_model
from torch import nn

from weightwise.compress.configs import Share
from weightwise.compress.modules import CompressedModule, rebuild, replace_module
from weightwise.compress.share import SharedLinear, SharedLowRankLinear, share_, tie_shared, unique_storage
from weightwise.errors import InputError
from weightwise.profile.storage import module_storage
from weightwise.profile.trace import Tracer


class Stack(nn.Module):
    """Three same-shape layers (out 12, in 10) plus one of another shape."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(10, 12) for _ in range(3))
        self.head = nn.Linear(12, 4, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(sum(layer(x) for layer in self.layers))


NAMES = ["layers.0", "layers.1", "layers.2"]


def stack() -> Stack:
    torch.manual_seed(0)
    return Stack()


def weights(network: Stack) -> list[torch.Tensor]:
    return [network.get_submodule(n).weight.detach().clone() for n in NAMES]


def biases(network: Stack) -> list[torch.Tensor]:
    return [network.get_submodule(n).bias.detach().clone() for n in NAMES]


def test_full_sharing_stores_one_mean_weight():
    network = stack()
    originals, own_biases = weights(network), biases(network)
    share_(network, NAMES, Share("full"))
    layers = [network.get_submodule(n) for n in NAMES]
    assert all(isinstance(m, SharedLinear) and m.kind == "shared_linear" for m in layers)
    assert layers[0].weight is layers[1].weight is layers[2].weight
    assert len({m.weight.data_ptr() for m in layers}) == 1
    torch.testing.assert_close(layers[0].weight.detach(), sum(originals) / 3)
    x = torch.randn(5, 10)
    assert len({id(m.bias) for m in layers}) == 3  # each keeps its own bias
    for module, bias in zip(layers, own_biases, strict=True):
        assert torch.equal(module.bias, bias)
        torch.testing.assert_close(module(x), F.linear(x, sum(originals) / 3, bias))
    keys = [module_storage(m)["weight"].key for m in layers]
    assert len(set(keys)) == 1
    assert unique_storage(network) == {
        "unique_params": 120 + 3 * 12 + 48,
        "unique_bytes": 4 * (120 + 3 * 12 + 48),
        "params_if_dense": 3 * (120 + 12) + 48,
    }


def test_tracer_counts_a_shared_weight_once():
    network = stack()
    share_(network, NAMES, Share("full"))
    tracer = Tracer(network)
    with tracer:
        network(torch.randn(2, 10))
    tensors = tracer.result("toy", "fp32", True).tensors
    shared = [t for t in tensors if t.name.endswith(".weight") and t.name.startswith("layers")]
    assert [(t.name, t.nbytes, t.calls, t.users) for t in shared] == [("layers.0.weight", 480, 3, tuple(NAMES))]
    assert shared[0].macs == 3 * 2 * 12 * 10
    assert sum(t.nbytes for t in tensors) == 4 * (120 + 3 * 12 + 48)


def concatenated_error(originals, approximations) -> float:
    return float(sum(((w.double() - a.double()) ** 2).sum() for w, a in zip(originals, approximations, strict=True)))


def test_lowrank_u_shares_u_and_keeps_one_v_per_layer():
    network = stack()
    originals, rank = weights(network), 4
    share_(network, NAMES, Share("lowrank_u", rank=rank))
    layers = [network.get_submodule(n) for n in NAMES]
    assert all(isinstance(m, SharedLowRankLinear) and m.kind == "shared_lowrank_linear" for m in layers)
    assert layers[0].u is layers[1].u is layers[2].u and layers[0].u.shape == (12, rank)
    assert len({id(m.v) for m in layers}) == 3 and layers[0].v.shape == (rank, 10)
    u = layers[0].u.detach()
    torch.testing.assert_close(u.T @ u, torch.eye(rank), atol=1e-5, rtol=0)
    for module, w in zip(layers, originals, strict=True):
        torch.testing.assert_close(module.v.detach(), u.T @ w, atol=1e-5, rtol=1e-5)  # least squares
    s = np.linalg.svd(torch.cat(originals, dim=1).double().numpy(), compute_uv=False)  # [W1 W2 W3]
    approximations = [(m.u @ m.v).detach() for m in layers]
    discarded = float((s[rank:] ** 2).sum())
    assert concatenated_error(originals, approximations) == pytest.approx(discarded, rel=1e-5)
    storages = [module_storage(m) for m in layers]
    assert len({st["u"].key for st in storages}) == 1 and len({st["v"].key for st in storages}) == 3
    assert storages[0]["u"].format == "shared-lowrank-u" and storages[0]["v"].format == "lowrank-v"
    expected = 12 * rank + 3 * rank * 10 + 3 * 12 + 48
    assert unique_storage(network)["unique_params"] == expected


def test_lowrank_v_shares_v_and_keeps_one_u_per_layer():
    network = stack()
    originals, rank = weights(network), 3
    share_(network, NAMES, Share("lowrank_v", rank=rank))
    layers = [network.get_submodule(n) for n in NAMES]
    assert layers[0].v is layers[1].v is layers[2].v and layers[0].v.shape == (rank, 10)
    assert len({id(m.u) for m in layers}) == 3 and layers[0].u.shape == (12, rank)
    s = np.linalg.svd(torch.cat(originals, dim=0).double().numpy(), compute_uv=False)  # [W1; W2; W3]
    approximations = [(m.u @ m.v).detach() for m in layers]
    discarded = float((s[rank:] ** 2).sum())
    assert concatenated_error(originals, approximations) == pytest.approx(discarded, rel=1e-5)
    x = torch.randn(4, 10)
    for module, approx in zip(layers, approximations, strict=True):
        torch.testing.assert_close(module(x), F.linear(x, approx, module.bias))
    assert unique_storage(network)["unique_params"] == 3 * 12 * rank + rank * 10 + 3 * 12 + 48


def test_share_needs_two_modules():
    with pytest.raises(InputError, match=r"^layers\.0: share needs at least 2 Linear modules"):
        share_(stack(), ["layers.0"], Share("full"))


def test_share_needs_one_shape():
    with pytest.raises(InputError, match=r"one shape, got layers\.0 12x10, head 4x12$"):
        share_(stack(), ["layers.0", "head"], Share("full"))


@pytest.mark.parametrize("what,limit", [("lowrank_u", 12), ("lowrank_v", 10)])
def test_share_rank_above_the_maximum_is_an_error(what, limit):
    network = stack()
    before = weights(network)
    with pytest.raises(
        InputError,
        match=rf"^layers\.0, layers\.1: share {what} rank 50 is above the "
        rf"maximum rank {limit} ",
    ):
        share_(network, ["layers.0", "layers.1"], Share(what, rank=50))
    assert all(torch.equal(a, b) for a, b in zip(before, weights(network), strict=True))  # nothing replaced


def test_share_rejects_non_linear():
    network = nn.Sequential(nn.Linear(4, 4), nn.Embedding(4, 4))
    with pytest.raises(InputError, match=r"^1: share supports Linear modules only"):
        share_(network, ["0", "1"], Share("full"))


@pytest.mark.parametrize("config", [Share("full"), Share("lowrank_u", rank=4), Share("lowrank_v", rank=4)])
def test_safetensors_round_trip_keeps_the_sharing(config, tmp_path):
    network = stack()
    share_(network, NAMES, config)
    path = str(tmp_path / "model.safetensors")
    save_model(network, path)
    with safe_open(path, "pt") as saved:
        assert len(list(saved.keys())) == len(set(map(id, network.parameters())))  # shared once
    fresh = Stack()
    for name, module in network.named_modules():
        if isinstance(module, CompressedModule):
            replace_module(fresh, name, rebuild(module.kind, module.spec()))
    tie_shared(fresh)
    load_state(fresh, path)
    sa, sb = network.state_dict(), fresh.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert len(set(map(id, fresh.parameters()))) == len(set(map(id, network.parameters())))
    x = torch.randn(3, 10)
    assert torch.equal(network(x), fresh(x))


def test_tie_shared_reports_a_missing_owner():
    module = SharedLinear(10, 12, tied={"weight": "nowhere.weight"})
    with pytest.raises(InputError, match=r"^0\.weight: shares nowhere\.weight"):
        tie_shared(nn.Sequential(module))


@pytest.mark.slow
def test_whisper_unique_storage_after_sharing_decoder_fc2(weightwise_cache):
    from weightwise.compress.api import compress_
    from weightwise.compress.plan import Plan
    from weightwise.models import load_model

    model = load_model("whisper-tiny.en")
    n_params = sum(p.numel() for p in model.network.parameters())  # tied table counted once
    dense = unique_storage(model.network)
    assert dense == {"unique_params": n_params, "unique_bytes": 4 * n_params, "params_if_dense": n_params}
    rule = {"match": r"re:model\.decoder\.layers\.\d+\.fc2", "share": {"what": "lowrank_u", "rank": 128}}
    compress_(model, Plan.from_dict({"rules": [rule]}))  # fc2: 384 x 1536, U (384 x 128) shared by 4
    after = unique_storage(model.network)
    assert after["unique_params"] == n_params - 4 * 384 * 1536 + 384 * 128 + 4 * 128 * 1536
    assert after["params_if_dense"] == n_params
