"""Packed low-bit kernels: a packed layer computes what its simulated `QuantModule` does (within
bf16 rounding of activations and scales), tied embedding/projection share one packed table, and a
plan's weights in RAM are about its stored bytes."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from weightwise.compress import Plan, Quant, compress_
from weightwise.compress.packed import DEQUANT_MIN_ROWS, PackedQuantModule, pack_, packable
from weightwise.compress.quantize import QuantModule
from weightwise.compress.share import unique_storage
from weightwise.decode import transcribe
from weightwise.evaluate.runtime import weight_bytes_resident, weight_kernels

PLANS = Path(__file__).resolve().parents[2] / "benchmarks" / "plans"
#: Tolerance, per output row, relative to the row's norm: 1% plus 15% of the error quantization
#: itself makes (float -> simulated). bf16 keeps 8 significant bits, so activations and scales round
#: by <= 2^-9 each (~0.4% of a row); an asymmetric group's zero, (8 - zero point) * scale in bf16,
#: moves each weight by <= scale / 64, a few % of the quantization step (scale / 2).
TOLERANCE, OF_QUANT_ERROR = 0.01, 0.15
CONFIGS = [
    Quant(4, "group", 64),
    Quant(4, "group", 32, symmetric=False),
    Quant(3, "group", 128),
    Quant(8, "channel"),
    Quant(16),
]


def _relative_error(approx: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    return ((approx - exact).norm(dim=-1) / exact.norm(dim=-1)).max()


def _within_tolerance(packed: torch.Tensor, simulated: torch.Tensor, dense: torch.Tensor) -> bool:
    return bool(_relative_error(packed, simulated) < TOLERANCE + OF_QUANT_ERROR * _relative_error(simulated, dense))


@pytest.fixture(scope="module")
def layers(tiny_model) -> dict[str, torch.nn.Module]:
    """Real layers of tiny.en: an encoder FFN pair and the 51,864-row output projection."""
    layer = tiny_model.network.model.encoder.layers[1]
    return {"fc1": layer.fc1, "fc2": layer.fc2, "proj_out": tiny_model.network.proj_out}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"int{c.bits}-{c.granularity}{c.group_size}-{c.symmetric}")
@pytest.mark.parametrize("name", ["fc1", "fc2", "proj_out"])
def test_packed_linear_matches_simulated(layers, name, config):
    simulated = QuantModule.from_float(layers[name], name, config)
    net = torch.nn.Sequential(copy.deepcopy(simulated))
    assert pack_(net) == 1 and isinstance(net[0], PackedQuantModule)
    torch.manual_seed(0)
    for rows in (1, 3, DEQUANT_MIN_ROWS + 1):  # the decoder's kernel path and the encoder's GEMM path
        x = torch.randn(2, rows, simulated.cols)
        with torch.no_grad():
            assert _within_tolerance(net[0](x), simulated(x), layers[name](x)), rows
    direct = PackedQuantModule.from_float(layers[name], name, config)  # no simulated module in between
    for key, tensor in net[0].state_dict().items():
        assert torch.equal(direct.state_dict()[key], tensor), key


@pytest.mark.parametrize("config", [Quant(8, "channel"), Quant(16)], ids=["int8", "fp16"])
def test_packed_conv_matches_simulated(tiny_model, config):
    conv = tiny_model.network.model.encoder.conv2
    simulated = QuantModule.from_float(conv, "conv2", config)
    packed = PackedQuantModule.from_float(conv, "conv2", config)
    x = torch.randn(1, conv.in_channels, 200)
    with torch.no_grad():
        assert _within_tolerance(packed(x).transpose(1, 2), simulated(x).transpose(1, 2), conv(x).transpose(1, 2))
    assert packed.stride == conv.stride and not packable(QuantModule.from_float(conv, "conv2", Quant(4, "group", 64)))


TOKENS = torch.tensor([[0, 1, 50256, 51863, 64, 63, 32, 31]])  # block edges, the last (padded-block) row


@pytest.fixture(scope="module")
def int4_plan(tiny_model, sample_audio) -> dict:
    """tiny.en by the committed int4 group-64 plan, simulated then packed, with what the simulated
    model computed and held."""
    model = copy.deepcopy(tiny_model)
    compress_(model, Plan.from_json(PLANS / "int4-group64.json"))
    simulated = {
        "embedding": model.network.model.decoder.embed_tokens(TOKENS),
        "text": transcribe(model, sample_audio[0][1]).text,
        "stored": unique_storage(model.network)["unique_bytes"],
        "resident": weight_bytes_resident(model.network),
    }
    pack_(model.network)
    return {"model": model, "simulated": simulated}


def test_tied_embedding_and_projection_share_one_packed_table(int4_plan, tiny_model):
    network = int4_plan["model"].network
    embed, proj = network.model.decoder.embed_tokens, network.proj_out
    assert isinstance(embed, PackedQuantModule) and isinstance(proj, PackedQuantModule)
    assert embed.packed is proj.packed and embed.scales is proj.scales
    dense = tiny_model.network.model.decoder.embed_tokens(TOKENS)
    assert _within_tolerance(embed(TOKENS), int4_plan["simulated"]["embedding"], dense)


def test_plan_weights_in_ram_about_stored_bytes(int4_plan, tiny_model, sample_audio):
    model, simulated = int4_plan["model"], int4_plan["simulated"]
    stored = simulated["stored"]
    assert simulated["resident"] > 4 * stored  # simulation: codes + a float copy
    assert not any(packable(m) for m in model.network.modules())
    assert unique_storage(model.network)["unique_bytes"] == stored  # the profile sees the same storage
    assert weight_bytes_resident(model.network) <= 1.2 * stored
    assert weight_bytes_resident(model.network) < weight_bytes_resident(tiny_model.network) / 5
    assert transcribe(model, sample_audio[0][1]).text == simulated["text"]


def test_unpackable_modules_stay_simulated(layers):
    for config in (Quant(8, "channel", symmetric=False), Quant(4, "group", 48)):
        net = torch.nn.Sequential(QuantModule.from_float(layers["fc1"], "fc1", config))
        assert pack_(net) == 0 and isinstance(net[0], QuantModule)


#: a mixed plan as `optimize` emits them: int4 decoder layers, an int8 tied token table, fp16 for
#: the rest (convolutions included), with runtime settings (their hooks must sit on packed modules)
MIXED = {
    "rules": [
        {"match": "re:model\\.decoder\\.layers\\..*", "quant": {"bits": 4, "granularity": "group", "group_size": 64}},
        {"match": ["model.decoder.embed_tokens", "proj_out"], "quant": {"bits": 8}},
        {"match": "re:.*", "quant": {"bits": 16}},
    ],
    "runtime": {"kv_precision": "int8", "activation_precision": "int8", "encoder_context": "auto"},
}


@pytest.fixture(scope="module")
def mixed(tiny_model, sample_audio) -> dict:
    """tiny.en by `MIXED`: simulated, and quantized straight into packed form."""
    simulated, packed = copy.deepcopy(tiny_model), copy.deepcopy(tiny_model)
    compress_(simulated, Plan.from_dict(MIXED, name="mixed"))
    compress_(packed, Plan.from_dict(MIXED, name="mixed"), pack=True)
    return {"simulated": simulated, "packed": packed, "text": transcribe(simulated, sample_audio[0][1]).text}


def test_a_mixed_plan_runs_packed_with_its_runtime_settings(mixed, sample_audio, tiny_model):
    network = mixed["packed"].network
    assert weight_kernels(network) == "packed" and weight_kernels(mixed["simulated"].network) == "simulated"
    assert weight_kernels(tiny_model.network) == "float"
    kinds = {type(m).__name__ for m in network.modules() if getattr(m, "kind", None)}
    assert kinds == {"PackedQuantModule"}  # every weight module, conv1d included
    assert network.model.decoder.layers[0].self_attn.k_proj._forward_hooks  # kv_precision: the cache write
    assert network.model.encoder.layers[0].fc1._forward_pre_hooks  # activation_precision: the inputs
    assert transcribe(mixed["packed"], sample_audio[0][1]).text == mixed["text"]
    stored = unique_storage(mixed["simulated"].network)["unique_bytes"]
    assert unique_storage(network)["unique_bytes"] == stored
    assert weight_bytes_resident(network) <= 1.2 * stored < weight_bytes_resident(mixed["simulated"].network) / 2


def test_a_saved_plan_loads_packed(mixed, tmp_path, sample_audio):
    from weightwise.compress import load_compressed, save_compressed
    from weightwise.compress.loading import load_model_with_plan

    out = save_compressed(mixed["simulated"], tmp_path / "tiny-mixed")
    loaded = load_model_with_plan(str(out))  # what `--model DIR` does
    network = loaded.network
    assert not any(isinstance(m, QuantModule) for m in network.modules())
    embed, proj = network.model.decoder.embed_tokens, network.proj_out
    assert isinstance(proj, PackedQuantModule) and embed.packed is proj.packed
    for key, tensor in mixed["packed"].network.state_dict().items():  # the same packed tensors as packing in memory
        assert torch.equal(network.state_dict()[key], tensor), key
    assert loaded.runtime == mixed["simulated"].runtime and loaded.info.plan == "mixed"
    assert transcribe(loaded, sample_audio[0][1]).text == mixed["text"]
    stored = unique_storage(mixed["simulated"].network)["unique_bytes"]
    assert weight_bytes_resident(network) <= 1.2 * stored
    assert isinstance(load_compressed(out).network.proj_out, QuantModule)  # the library default: exact state


def test_a_saved_model_with_a_misshapen_code_table_is_one_line(mixed, tmp_path):
    from safetensors.torch import load_file, save_file

    from weightwise.compress import save_compressed
    from weightwise.compress.loading import load_model_with_plan
    from weightwise.errors import InputError

    out = save_compressed(mixed["simulated"], tmp_path / "tiny-mixed")
    state = load_file(out / "model.safetensors")
    key = "model.decoder.layers.0.fc1.codes"
    state[key] = state[key][:, :-1].contiguous()
    save_file(state, out / "model.safetensors")
    with pytest.raises(InputError, match=r"model\.safetensors: cannot load.*fc1\.codes has shape") as err:
        load_model_with_plan(str(out))
    assert "\n" not in str(err.value)
