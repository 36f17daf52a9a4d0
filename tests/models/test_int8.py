"""`--precision int8`: int8 weights per channel, activations int8 with one scale per row."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

import weightwise.models.int8 as int8_module
from weightwise.decode.features import log_mel_spectrogram, split_windows
from weightwise.errors import InputError
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


@pytest.mark.parametrize("matrix_unit", [True, False])
def test_many_rows_both_gemm_paths_match_float_layer(fc1, hidden, monkeypatch, matrix_unit):
    """The bf16 GEMM on the codes (AMX CPUs) and the fp32 GEMM on the dequantized weight both give
    the int8 weights' product; bf16 activations add ~0.3% per row at most."""
    monkeypatch.setattr(int8_module, "bf16_matrix_unit", lambda: matrix_unit)
    layer = WeightOnlyInt8Linear.from_float(fc1)
    dequantized = torch.nn.Linear(fc1.in_features, fc1.out_features)
    with torch.no_grad():
        dequantized.weight.copy_(layer.codes.float() * layer.scales[:, None])
        dequantized.bias.copy_(fc1.bias)
        x = hidden[: DEQUANT_MIN_ROWS + 7]
        error = _relative_error(layer(x), dequantized(x))
    assert error.max() < (0.008 if matrix_unit else 1e-5)


def test_scales_copy_follows_the_scales(fc1, hidden):
    """The bf16 copy of the scales the few-row kernel takes is redone when the scales change."""
    layer = WeightOnlyInt8Linear.from_float(fc1)
    with torch.no_grad():
        before = layer(hidden[:1])
        layer.scales.mul_(2)
        after = layer(hidden[:1])
    torch.testing.assert_close(after - fc1.bias, 2 * (before - fc1.bias), rtol=1e-2, atol=1e-3)


def test_gemm_choice_from_environment(monkeypatch):
    for value, expected in (("amx-bf16", True), ("fp32", False)):
        monkeypatch.setenv(int8_module.INT8_GEMM_ENV, value)
        int8_module.bf16_matrix_unit.cache_clear()
        assert int8_module.bf16_matrix_unit() is expected
    monkeypatch.setenv(int8_module.INT8_GEMM_ENV, "avx")
    int8_module.bf16_matrix_unit.cache_clear()
    with pytest.raises(InputError, match="WEIGHTWISE_INT8_GEMM='avx'"):
        int8_module.bf16_matrix_unit()
    monkeypatch.delenv(int8_module.INT8_GEMM_ENV)
    int8_module.bf16_matrix_unit.cache_clear()


def test_matrix_unit_int8_model_transcribes_as_fp32(tiny_model, sample_audio, monkeypatch):
    """On an AMX CPU `--precision int8` is weight-only everywhere with bf16 encoder attention; forced
    here on any CPU: the layer types, the encoder's attention implementation, and the transcripts
    (normalized as WER scores them: punctuation may move)."""
    from weightwise.decode import transcribe
    from weightwise.evaluate.normalize import normalize
    from weightwise.models import precision

    monkeypatch.setattr(precision, "bf16_matrix_unit", lambda: True)
    monkeypatch.setattr(int8_module, "bf16_matrix_unit", lambda: True)
    network = precision.apply_precision(copy.deepcopy(tiny_model.network), "int8")
    kinds = {name: type(m).__name__ for name, m in network.named_modules()}
    assert kinds["model.encoder.layers.0.fc1"] == "WeightOnlyInt8Linear"
    assert network.model.encoder.layers[0].self_attn.config._attn_implementation == precision.BF16_ATTENTION
    assert network.model.decoder.layers[0].self_attn.config._attn_implementation != precision.BF16_ATTENTION
    model = copy.copy(tiny_model)
    model.network = network
    for _utt, audio in sample_audio:
        assert normalize(transcribe(model, audio).text) == normalize(transcribe(tiny_model, audio).text)


def test_tied_embedding_reads_the_projections_codes(tiny_model):
    """`--precision int8` drops the fp32 token table: the embedding looks its rows up in the tied
    projection's int8 codes (what the projection computes with), one stored tensor for both."""
    from weightwise.evaluate.runtime import weight_bytes_resident
    from weightwise.models import precision
    from weightwise.profile.storage import module_storage

    network = precision.apply_precision(copy.deepcopy(tiny_model.network), "int8")
    embedding, projection = network.model.decoder.embed_tokens, network.proj_out
    assert isinstance(embedding, int8_module.TiedInt8Embedding) and isinstance(projection, WeightOnlyInt8Linear)
    ids = torch.tensor([[50257, 440, 1110, 50256, 0, 51863]])
    dequantized = projection.codes.float() * projection.scales[:, None] * projection.input_scale
    assert torch.equal(embedding(ids), dequantized[ids])  # the projection's own weights, row by row
    exact = tiny_model.network.model.decoder.embed_tokens(ids)
    assert _relative_error(embedding(ids), exact).max() < 0.02  # int8 per row: ~0.5% (rounding, equalization)
    table = tiny_model.network.model.decoder.embed_tokens.weight
    assert weight_bytes_resident(tiny_model.network) - weight_bytes_resident(network) > table.numel() * 3
    stored, read = module_storage(embedding)["weight"], module_storage(projection)["weight"]
    assert stored == read  # one tensor: the profile counts its bytes once
    assert embedding.weightwise_bytes_read("weight", stored, (ids,), embedding(ids)) == ids.numel() * (384 + 4)
    assert not any(n.startswith("model.decoder.embed_tokens") for n in network.state_dict())


@pytest.mark.parametrize(
    ("prefix", "int8", "float32"),
    [
        ("model.decoder.", "model.decoder.layers.3.fc2", "model.encoder.layers.0.fc1"),
        ("proj_out", "proj_out", "model.decoder.layers.0.fc1"),
        ("model.encoder.", "model.encoder.layers.0.fc1", "proj_out"),
    ],
)
def test_int8_only_quantizes_one_part_by_the_same_rules(tiny_model, prefix, int8, float32):
    """`apply_precision(..., "int8", int8_only=PREFIX)` (token_margins.py --int8-only): the chosen
    part exactly as `--precision int8` makes it, every other Linear untouched."""
    from weightwise.models import precision

    full = precision.apply_precision(copy.deepcopy(tiny_model.network), "int8")
    part = precision.apply_precision(copy.deepcopy(tiny_model.network), "int8", int8_only=prefix)
    quantized = [n for n, m in full.named_modules() if isinstance(m, (RowwiseInt8Linear, WeightOnlyInt8Linear))]
    assert int8 in quantized and float32 in quantized and len(quantized) > 40
    for name in quantized:
        expected = type(full.get_submodule(name)) if name.startswith(prefix) else torch.nn.Linear
        assert type(part.get_submodule(name)) is expected, name
    assert isinstance(part.model.decoder.embed_tokens, int8_module.TiedInt8Embedding) == (prefix == "proj_out")
    if prefix == "proj_out":  # equalized and coded as in the full int8 model
        assert torch.equal(part.proj_out.codes, full.proj_out.codes)
        assert torch.equal(part.proj_out.input_scale, full.proj_out.input_scale)
