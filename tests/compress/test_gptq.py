"""GPTQ: equal to a plain sequential reference (explicit inverses, no Cholesky, no lazy batches),
a known two-column compensation, bounded by exhaustive search and below round-to-nearest on its
objective, the `quant` storage format at 8/4/3 bits, and on whisper-tiny.en: the tied projection
quantized once from the decoder's final hidden states, better than RTN on held-out audio, saved
and reloaded bit-identically."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from torch import nn

from weightwise.cli import main
from weightwise.compress import Gptq, Plan, Quant, compress_, load_compressed, save_compressed
from weightwise.compress.gptq import CLIP_SHRINKS, gptq_quantize, stage_of
from weightwise.compress.quantize import QuantModule, dequantize_weight, quantize_weight
from weightwise.errors import InputError
from weightwise.profile.storage import module_storage


def correlated(rows: int, cols: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (rows, cols), H = X^T X / n) in float64, inputs with correlated, unequal columns."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(cols, cols, generator=g, dtype=torch.float64) * 0.5 + torch.eye(cols, dtype=torch.float64)
    x = torch.randn(n, cols, generator=g, dtype=torch.float64) @ mix * torch.rand(cols, generator=g).double().add(0.2)
    return torch.randn(rows, cols, generator=g, dtype=torch.float64), x.T @ x / n


def objective(w: torch.Tensor, q: torch.Tensor, h: torch.Tensor) -> float:
    """||X W^T - X Q^T||^2 / n = sum_i (w_i - q_i)^T H (w_i - q_i)."""
    d = (w - q).double()
    return float(((d @ h.double()) * d).sum())


def rebuilt(state, config: Gptq) -> torch.Tensor:
    return dequantize_weight(*state, config.quant()).double()


# -- a plain reference, written from the paper's equations ------------------------------------------


def plain_params(values: torch.Tensor, weights: torch.Tensor, bits: int, symmetric: bool, clip: bool):
    """Per-row (scale, zero) of `values` (rows, n): range [min(w,0), max(w,0)] (or +-absmax) over the
    code range, shrunk by the factor in CLIP_SHRINKS with the least weighted squared error."""
    scales, zeros = [], []
    for row in values:
        best = None
        for shrink in CLIP_SHRINKS if clip else (1.0,):
            if symmetric:
                top = 2 ** (bits - 1) - 1
                scale = shrink * float(row.abs().max()) / top
                scale, zero, low, high = scale if scale > 0 else 1.0, 0.0, -top, top
            else:
                top = 2**bits - 1
                lo, hi = shrink * min(float(row.min()), 0.0), shrink * max(float(row.max()), 0.0)
                scale = (hi - lo) / top if hi > lo else 1.0
                zero, low, high = min(max(round(-lo / scale), 0), top), 0, top
            codes = torch.clamp(torch.round(row / scale) + zero, low, high)
            err = float((((codes - zero) * scale - row) ** 2 * weights).sum())
            if best is None or err < best[0]:
                best = (err, scale, zero)
        scales.append(best[1])
        zeros.append(best[2])
    return torch.tensor(scales, dtype=torch.float64), torch.tensor(zeros, dtype=torch.float64)


def reference_gptq(w: torch.Tensor, h: torch.Tensor, config: Gptq) -> torch.Tensor:
    """Codes by the optimal-brain-surgeon recursion: quantize the next column, move every remaining
    column by -(w_j - q_j) [H_R^-1]_{j,r} / [H_R^-1]_{j,j}, drop j from R; H_R^-1 recomputed by an
    explicit inverse of H restricted to the remaining columns R each step."""
    cols = w.shape[1]
    group = config.group_size if config.granularity == "group" else cols
    hd = h + config.damp * float(h.diagonal().mean()) * torch.eye(cols, dtype=torch.float64)
    order = sorted(range(cols), key=lambda c: -float(h[c, c])) if config.act_order else list(range(cols))
    w, codes, params = w.clone(), torch.zeros_like(w), {}
    for step, j in enumerate(order):
        remaining = order[step:]
        inverse = torch.linalg.inv(hd[remaining][:, remaining])
        if j // group not in params:  # the group's grid, from its current values
            members = [i for i, c in enumerate(remaining) if c // group == j // group]
            # GPTQ weighs column c's squared error by 1 / [H_{R_c}^-1]_{c,c}, R_c = c and after it
            weights = torch.tensor(
                [1.0 / float(torch.linalg.inv(hd[remaining[i:]][:, remaining[i:]])[0, 0]) for i in members],
                dtype=torch.float64,
            )
            params[j // group] = plain_params(
                w[:, [remaining[i] for i in members]], weights, config.bits, config.symmetric, config.clip_search
            )
        scale, zero = params[j // group]
        low, high = (
            (-(2 ** (config.bits - 1) - 1), 2 ** (config.bits - 1) - 1) if config.symmetric else (0, 2**config.bits - 1)
        )
        codes[:, j] = torch.clamp(torch.round(w[:, j] / scale) + zero, low, high)
        error = w[:, j] - (codes[:, j] - zero) * scale
        w[:, remaining[1:]] -= torch.outer(error / inverse[0, 0], inverse[0, 1:])
    return codes


@pytest.mark.parametrize("bits,symmetric,granularity", [(4, False, "group"), (3, True, "group"), (8, False, "channel")])
@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("clip_search", [False, True])
def test_equals_the_plain_sequential_reference(bits, symmetric, granularity, act_order, clip_search):
    # block_size 5 and groups of 4: lazy batches straddle groups (pending updates must be applied)
    config = Gptq(
        bits=bits,
        granularity=granularity,
        group_size=4,
        symmetric=symmetric,
        damp=0.01,
        act_order=act_order,
        clip_search=clip_search,
        block_size=5,
    )
    w, h = correlated(rows=6, cols=12, n=40, seed=bits + 10 * act_order)
    codes, _, _ = gptq_quantize(w, h, config)
    expected = reference_gptq(w, h, config)
    assert torch.equal(codes.double(), expected)


def test_two_correlated_inputs_known_compensation():
    """x0 == x1 (H01 = H00 = H11 = 1), x2 independent. Column 2 fixes the range [0, 1.5]: scale 0.1.
    Column 0 (0.34) rounds to 0.3; its error 0.04 moves column 1 by 0.04 H01 / (H11 + damp) =
    0.04 / 1.01, so 0.54 -> 0.5796 -> code 6 (RTN: 5): the sum w0 + w1, all that x0 == x1 sees, is kept
    to 0.02 where RTN misses it by 0.08."""
    w = torch.tensor([[0.34, 0.54, 1.5]], dtype=torch.float64)
    h = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    config = Gptq(bits=4, granularity="channel", symmetric=False, damp=0.01, act_order=False, clip_search=False)
    codes, scales, zeros = gptq_quantize(w, h, config)
    assert codes.tolist() == [[3, 6, 15]] and zeros.tolist() == [[0]]
    assert math.isclose(float(scales), 0.1, rel_tol=1e-6)
    rtn_codes, _, _ = quantize_weight(w, config.quant())
    assert rtn_codes.tolist() == [[3, 5, 15]]
    assert (
        objective(w, rebuilt((codes, scales, zeros), config), h)
        < objective(w, rebuilt(quantize_weight(w, config.quant()), config), h) / 10
    )


@pytest.mark.parametrize("bits,granularity,symmetric", [(4, "group", False), (8, "channel", True), (3, "group", True)])
def test_uncorrelated_inputs_give_round_to_nearest(bits, granularity, symmetric):
    """Diagonal H: nothing to compensate, so the codes are exactly `quant`'s."""
    w, _ = correlated(rows=5, cols=16, n=10, seed=3)
    h = torch.diag(torch.rand(16, generator=torch.Generator().manual_seed(1)).double() + 0.5)
    config = Gptq(
        bits=bits, granularity=granularity, group_size=8, symmetric=symmetric, act_order=True, clip_search=False
    )
    got, want = gptq_quantize(w.float(), h, config), quantize_weight(w.float(), config.quant())
    assert torch.equal(got[0], want[0]) and torch.allclose(got[1], want[1], rtol=1e-6)
    assert (got[2] is None) == (want[2] is None) and (got[2] is None or torch.equal(got[2], want[2]))


def test_between_exhaustive_search_and_rtn():
    """One row, 6 columns, 3 bits, one grid: all 8^6 code vectors tried. GPTQ is greedy, so on one
    instance it may lose to RTN (a compensated column pushed past the grid is clamped); over ten it
    finds the optimum at least half the time and its total is lower."""
    config = Gptq(bits=3, granularity="channel", symmetric=False, act_order=True, clip_search=False)
    grid = torch.tensor(list(itertools.product(range(8), repeat=6)), dtype=torch.float64)
    optimal, ours_total, rtn_total = 0, 0.0, 0.0
    for seed in range(10):
        w, h = correlated(rows=1, cols=6, n=12, seed=seed)
        codes, scales, zeros = gptq_quantize(w, h, config)
        d = w - (grid - float(zeros)) * float(scales)
        best = float(((d @ h) * d).sum(1).min())
        ours = objective(w, rebuilt((codes, scales, zeros), config), h)
        assert best <= ours * (1 + 1e-6)  # rebuilt in float32, as the module stores it
        optimal += ours <= best * (1 + 1e-6)
        ours_total += ours
        rtn_total += objective(w, rebuilt(quantize_weight(w, config.quant()), config), h)
    assert optimal >= 5 and ours_total < 0.85 * rtn_total


@pytest.mark.parametrize("bits", [3, 4, 8])
def test_beats_rtn_on_its_objective(bits):
    w, h = correlated(rows=48, cols=128, n=400, seed=bits)
    for symmetric in (False, True):
        config = Gptq(bits=bits, group_size=32, symmetric=symmetric)
        rtn = objective(w, rebuilt(quantize_weight(w, config.quant()), config), h)
        ours = objective(w, rebuilt(gptq_quantize(w.float(), h, config), config), h)
        assert ours < 0.8 * rtn


@pytest.mark.parametrize("bits,granularity,symmetric", [(3, "group", False), (4, "group", True), (8, "channel", False)])
def test_codes_scales_and_storage_in_the_quant_format(bits, granularity, symmetric):
    from weightwise.compress.gptq import quant_module

    w, h = correlated(rows=10, cols=64, n=100, seed=0)
    config = Gptq(bits=bits, granularity=granularity, group_size=16, symmetric=symmetric)
    codes, scales, zeros = gptq_quantize(w.float(), h, config)
    assert codes.shape == (10, 64) and scales.shape == ((10, 4) if granularity == "group" else (10, 1))
    if symmetric:
        top = 2 ** (bits - 1) - 1
        assert codes.dtype == torch.int8 and zeros is None and int(codes.abs().max()) <= top
    else:
        assert codes.dtype == torch.uint8 and zeros.shape == scales.shape and int(codes.max()) <= 2**bits - 1
    linear = nn.Linear(64, 10)
    with torch.no_grad():
        linear.weight.copy_(w.float())
    module = quant_module(linear, "fc", config.quant(), (codes, scales, zeros))
    assert module.kind == "quant" and torch.equal(module.bias, linear.bias.detach())
    assert torch.allclose(module.weight, dequantize_weight(codes, scales, zeros, config.quant()))
    storage = module_storage(module)["weight"]
    n_scales = scales.numel()
    assert storage.nbytes == math.ceil(640 * bits / 8) + 4 * n_scales + (
        0 if symmetric else math.ceil(n_scales * bits / 8)
    )
    assert storage.dtype == f"int{max(bits, 4)}"  # int3 codes run their MACs as int4


def test_dead_inputs_are_dropped():
    w, h = correlated(rows=4, cols=8, n=30, seed=5)
    h[2, :], h[:, 2] = 0.0, 0.0  # input 2 never fired
    codes, scales, zeros = gptq_quantize(w, h, Gptq(bits=4, group_size=8))
    weight = rebuilt((codes, scales, zeros), Gptq(bits=4, group_size=8))
    assert torch.isfinite(weight).all() and torch.equal(weight[:, 2], torch.zeros(4, dtype=torch.float64))


@pytest.mark.parametrize(
    "params,message",
    [
        ({"bits": 2}, "gptq.bits"),
        ({"bits": 16}, "gptq.bits"),
        ({"damp": 0}, "gptq.damp"),
        ({"act_order": "yes"}, "gptq.act_order"),
        ({"group_size": 0}, "gptq.group_size"),
        ({"granularity": "tensor"}, "gptq.granularity"),
        ({"blocks": 3}, "unknown gptq parameter"),
    ],
)
def test_bad_config_names_the_field(params, message):
    with pytest.raises(InputError, match=message):
        Plan.from_dict({"rules": [{"match": "proj_out", "gptq": params}]})


def test_group_size_must_divide_inputs():
    with pytest.raises(InputError, match="does not divide"):
        gptq_quantize(torch.randn(4, 12), torch.eye(12), Gptq(group_size=8))


def test_stages_are_transformer_blocks():
    assert stage_of("model.encoder.layers.3.self_attn.q_proj") == "model.encoder.layers.3"
    assert stage_of("model.decoder.layers.0.fc2") == "model.decoder.layers.0"
    assert stage_of("proj_out") == "proj_out"


# -- on whisper-tiny.en -----------------------------------------------------------------------------

WELL_FED = ["model.encoder.layers.0.fc1", "model.decoder.layers.0.encoder_attn.k_proj"]  # 1500 rows a call


@pytest.fixture(scope="module")
def gptq_model(shared_data_dir):
    """tiny.en with GPTQ int4 (g64, asym) on two linears fed by encoder frames and on the tied
    projection, calibrated block by block (3 passes) on 2 untranscribed LibriSpeech train-clean-100
    utterances."""
    from weightwise.data import load_manifest
    from weightwise.models import load_model

    calib = load_manifest(shared_data_dir / "speech" / "librispeech_train_clean_100_untranscribed").head(2)
    model = load_model("whisper-tiny.en")
    plan = Plan.from_dict(
        {
            "rules": [
                {
                    "match": [*WELL_FED, "model.decoder.embed_tokens", "proj_out"],
                    "gptq": {"bits": 4, "group_size": 64, "sequential": True},
                }
            ]
        },
        name="gptq-test",
    )
    compress_(model, plan, calib)
    return model


@pytest.mark.slow
def test_whisper_tied_projection_quantized_once(gptq_model):
    emb, proj = gptq_model.network.model.decoder.embed_tokens, gptq_model.network.proj_out
    assert isinstance(emb, QuantModule) and isinstance(proj, QuantModule)
    assert emb.codes is proj.codes and emb.scales is proj.scales and emb.zero_points is proj.zero_points
    assert module_storage(emb)["weight"].key == module_storage(proj)["weight"].key
    assert emb.config == Quant(4, "group", 64, False) and emb.codes.shape == (51864, 384)


@pytest.mark.slow
def test_whisper_gptq_beats_rtn_on_held_out_audio(gptq_model, shared_data_dir):
    """Output error on a test-other utterance the calibration never saw (inputs from the float model).
    Only for layers fed by encoder frames: with a few decoder tokens (the projection here saw ~80 rows
    for 384 inputs) H is rank-deficient and GPTQ fits the calibration tokens, not the layer."""
    from weightwise.compress.calib import collect_hessians
    from weightwise.data import load_manifest
    from weightwise.models import load_model

    held_out = load_manifest(shared_data_dir / "speech" / "librispeech_test_other_mini").head(1)
    base = load_model("whisper-tiny.en")
    hessians = collect_hessians(base, held_out, WELL_FED)
    assert hessians[WELL_FED[0]].rows == hessians[WELL_FED[1]].rows == 1500  # one 30 s window, every frame
    config = Quant(4, "group", 64, False)
    for name in WELL_FED:
        w = base.network.get_submodule(name).weight.detach()
        h = hessians[name].hessian()
        ours = objective(w, gptq_model.network.get_submodule(name).weight, h)
        rtn = objective(w, dequantize_weight(*quantize_weight(w, config), config), h)
        assert ours < 0.6 * rtn, name


@pytest.mark.slow
def test_whisper_gptq_saves_and_reloads(gptq_model, tmp_path, sample_audio):
    from weightwise.decode import transcribe

    out = save_compressed(gptq_model, tmp_path / "tiny-gptq")
    plan = json.loads((out / "compressed.json").read_text())["plan"]
    assert plan["rules"][0]["gptq"]["bits"] == 4
    loaded = load_compressed(out)
    for name in ("proj_out", WELL_FED[0]):
        a, b = gptq_model.network.get_submodule(name), loaded.network.get_submodule(name)
        assert torch.equal(a.codes, b.codes) and torch.equal(a.scales, b.scales)
    assert loaded.network.proj_out.codes is loaded.network.model.decoder.embed_tokens.codes
    audio = sample_audio[0][1]
    assert transcribe(loaded, audio).text == transcribe(gptq_model, audio).text


def test_gptq_without_calibration_is_one_line(tmp_path, capsys):
    plan = tmp_path / "gptq.json"
    plan.write_text(json.dumps({"rules": [{"match": "proj_out", "gptq": {"bits": 4}}]}))
    assert (
        main(["eval", "--plan", str(plan), "--data", "samples", "--limit", "1", "--out", str(tmp_path / "o.json")]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--calib" in err[0] and "gptq" in err[0]


def test_conv_in_a_gptq_rule_is_rounded_with_a_warning(tmp_path):
    from weightwise.models import load_model

    model = load_model("whisper-tiny.en")
    plan = Plan.from_dict({"rules": [{"match": "model.encoder.conv2", "gptq": {"bits": 8, "group_size": 64}}]})
    with pytest.warns(UserWarning, match="rounded to nearest"):
        compress_(model, plan)  # no calibration needed: nothing to calibrate
    conv = model.network.model.encoder.conv2
    assert isinstance(conv, QuantModule) and conv.op == "conv1d" and conv.config == Quant(8, "group", 64, False)


def test_the_sweeps_hessian_cache_is_one_pass_that_equals_a_fresh_collection(tiny_model, samples):
    """The optimizer's sweep context collects every Linear's moments in one calibration pass; each
    equals a pass for that module alone (the network is the float one both times)."""
    from weightwise.compress.api import CompressContext
    from weightwise.compress.calib import collect_hessians

    calib = samples.head(1)
    context = CompressContext(tiny_model, calib, cache_hessians=True)
    names = ["model.decoder.layers.0.fc1", "proj_out"]
    cached = context.hessians(names[:1])
    assert len(context._hessians) > 60  # every Linear of the network, from that one pass
    cached.update(context.hessians(names[1:]))  # no second pass: already there
    fresh = collect_hessians(tiny_model, calib, names)
    for name in names:
        assert torch.allclose(cached[name].hessian(), fresh[name].hessian())
