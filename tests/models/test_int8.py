"""`--precision int8`: int8 weights per channel, activations int8 with one scale per row."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from weightwise.decode.features import log_mel_spectrogram, split_windows
from weightwise.models.int8 import (
    DEQUANT_MIN_ROWS,
    RowwiseInt8Linear,
    WeightOnlyInt8Linear,
    input_equalization,
    quantize_int8,
)


@pytest.fixture(scope="module")
def fc1(tiny_model) -> torch.nn.Linear:
    """A real layer: tiny.en's first encoder FFN input projection (384 -> 1536)."""
    return tiny_model.network.model.encoder.layers[0].fc1


@pytest.fixture(scope="module")
def hidden(tiny_model, sample_audio) -> torch.Tensor:
    """Real inputs of that layer: its layer-normed hidden states on a bundled utterance (1500 frames)."""
    captured = []
    layer = tiny_model.network.model.encoder.layers[0]
    handle = layer.final_layer_norm.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    try:
        with torch.no_grad():
            tiny_model.network.model.encoder(split_windows(log_mel_spectrogram(sample_audio[0][1]))[0].features[None])
    finally:
        handle.remove()
    return captured[0][0]


def _relative_error(approx: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """Error norm per row / that row's norm."""
    return (approx - exact).norm(dim=-1) / exact.norm(dim=-1)


def test_matches_float_layer(fc1, hidden):
    with torch.no_grad():
        exact, approx = fc1(hidden), RowwiseInt8Linear.from_float(fc1)(hidden)
    # int8 codes on both sides: ~0.5/127 relative error per element, ~1% per row after the sum
    assert _relative_error(approx, exact).max() < 0.03


def test_a_loud_row_leaves_the_others_exact(fc1, hidden):
    """One frame 1000x louder (a burst of noise) must not coarsen the codes of the other frames,
    as one scale per call (torch's dynamic int8) does."""
    loud = hidden.clone()
    loud[7] *= 1000
    with torch.no_grad():
        exact, rowwise = fc1(loud), RowwiseInt8Linear.from_float(fc1)(loud)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            per_tensor = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(fc1))(loud)
    quiet = torch.arange(len(loud)) != 7
    assert _relative_error(rowwise, exact)[quiet].max() < 0.03
    assert _relative_error(per_tensor, exact)[quiet].median() > 0.3  # the failure the rows avoid


def test_bias_and_batch_shapes(fc1, hidden):
    layer = RowwiseInt8Linear.from_float(fc1)
    batch = torch.stack([hidden[:5], -hidden[5:10]])  # (2, 5, 384)
    with torch.no_grad():
        out = layer(batch)
        assert out.shape == (2, 5, 1536)
        assert _relative_error(out, fc1(batch)).max() < 0.03
        assert torch.allclose(layer(torch.zeros(1, 384)), fc1.bias[None])  # an all-zero row: the bias


@pytest.mark.parametrize("rows", [1, 5, DEQUANT_MIN_ROWS + 1])  # decoding (int8 kernel), many frames (GEMM)
def test_weight_only_matches_float_layer(fc1, hidden, rows):
    layer = WeightOnlyInt8Linear.from_float(fc1)
    assert layer.codes.dtype == torch.int8 and layer.codes.shape == fc1.weight.shape
    with torch.no_grad():
        x = hidden[:rows]
        # int8 weights (+ bf16 activations on the kernel path): ~0.5% per row; float activations keep
        # a loud row from affecting any other
        assert _relative_error(layer(x), fc1(x)).max() < 0.015


def test_quantize_int8_chooses_per_layer(tiny_model):
    network = quantize_int8(copy.deepcopy(tiny_model.network), rowwise=lambda name: name.startswith("model.encoder."))
    kinds = {name: type(m).__name__ for name, m in network.named_modules()}
    assert kinds["model.encoder.layers.0.fc1"] == "RowwiseInt8Linear"
    assert kinds["model.decoder.layers.0.fc1"] == "WeightOnlyInt8Linear"
    assert kinds["proj_out"] == "WeightOnlyInt8Linear"
    assert "Linear" not in kinds.values()
    assert all(getattr(m, "input_scale", None) is None for m in network.modules())  # equalize: none by default


@pytest.fixture(scope="module")
def projection_inputs(tiny_model, sample_audio) -> torch.Tensor:
    """Real inputs of the output projection: the decoder's final states, teacher-forced on a bundled
    utterance's transcript (one row per token)."""
    utt, audio = sample_audio[0]
    network, tokens = tiny_model.network, tiny_model.tokens
    ids = list(tokens.prompt) + tiny_model.tokenizer.encode(" " + utt.text, add_special_tokens=False).ids
    with torch.no_grad():
        encoded = network.model.encoder(split_windows(log_mel_spectrogram(audio))[0].features[None])
        states = network.model.decoder(input_ids=torch.tensor([ids]), encoder_hidden_states=encoded.last_hidden_state)
    return states.last_hidden_state[0]


def test_equalization_cuts_the_tied_projections_error(tiny_model, projection_inputs):
    """One embedding dimension holds most rows' largest weight: equalizing the input columns first
    must cut the int8 projection's logit error well below per-row int8 alone (measured 4.7x on
    test-other mini states; asserted: at least 2x)."""
    proj = tiny_model.network.proj_out
    plain, equalized = WeightOnlyInt8Linear.from_float(proj), WeightOnlyInt8Linear.from_float(proj, equalize=True)
    assert plain.input_scale is None
    t = equalized.input_scale
    assert t.shape == (proj.in_features,) and (t > 0).all() and abs(t.mean().item() - 1) < 1e-5
    with torch.no_grad():
        exact = proj(projection_inputs)
        error_plain = (plain(projection_inputs) - exact).norm() / exact.norm()
        error_equalized = (equalized(projection_inputs) - exact).norm() / exact.norm()
    assert error_equalized < 0.5 * error_plain
    assert error_equalized < 0.01


def test_equalization_is_an_identity_in_float(fc1, hidden):
    """``(W / t) (x * t) = W x``: the factors move range from the weights to the activations only."""
    t = input_equalization(fc1.weight.detach())
    with torch.no_grad():
        moved = torch.nn.functional.linear(hidden * t, fc1.weight / t, fc1.bias)
    assert torch.allclose(moved, fc1(hidden), rtol=1e-4, atol=1e-4)
