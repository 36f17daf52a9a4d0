"""weightwise.models.whisper_ct2: CTranslate2 WhisperSpec -> transformers config and state dict."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from ct2_writer import ct2_bytes  # tests/models/ct2_writer.py

from weightwise.errors import InputError
from weightwise.models.ct2 import CT2Model, read_ct2_model
from weightwise.models.whisper_ct2 import _weight, hf_state_dict, whisper_config

D = 384  # tiny's d_model


@pytest.fixture(scope="module")
def tiny_config(tiny_ct2):
    return whisper_config(tiny_ct2)


@pytest.fixture(scope="module")
def tiny_state(tiny_ct2, tiny_config):
    return hf_state_dict(tiny_ct2, tiny_config)


def test_config_from_the_real_file(tiny_config):
    c = tiny_config
    assert (c.encoder_layers, c.decoder_layers) == (4, 4)
    assert c.d_model == 384 and c.vocab_size == 51864 and c.num_mel_bins == 80
    assert (c.encoder_attention_heads, c.decoder_attention_heads) == (6, 6)
    assert (c.encoder_ffn_dim, c.decoder_ffn_dim) == (4 * 384, 4 * 384)
    assert (c.max_source_positions, c.max_target_positions) == (1500, 448)
    assert (c.eos_token_id, c.decoder_start_token_id) == (50256, 50257)  # .en ids
    assert c.scale_embedding is False and c.tie_word_embeddings is True


def test_config_rejects_another_spec(tiny_ct2):
    other = CT2Model("TransformerSpec", 6, tiny_ct2.variables, tiny_ct2.aliases)
    with pytest.raises(InputError, match="TransformerSpec"):
        whisper_config(other)


def test_state_dict_matches_the_transformers_network(tiny_config, tiny_state):
    from transformers import WhisperForConditionalGeneration

    with torch.device("meta"):
        network = WhisperForConditionalGeneration(tiny_config)
    expected = {k: tuple(v.shape) for k, v in network.state_dict().items() if k != "proj_out.weight"}
    assert {k: tuple(v.shape) for k, v in tiny_state.items()} == expected


def test_encoder_qkv_are_row_blocks_of_the_fused_weight(tiny_ct2, tiny_state):
    for i in range(4):
        fused = tiny_ct2.variables[f"encoder/layer_{i}/self_attention/linear_0/weight"]
        bias = tiny_ct2.variables[f"encoder/layer_{i}/self_attention/linear_0/bias"]
        assert fused.shape == (3 * D, D)
        prefix = f"model.encoder.layers.{i}.self_attn"
        for block, proj in enumerate("qkv"):
            np.testing.assert_array_equal(
                tiny_state[f"{prefix}.{proj}_proj.weight"].numpy(), fused[block * D : (block + 1) * D]
            )
        np.testing.assert_array_equal(tiny_state[f"{prefix}.q_proj.bias"].numpy(), bias[:D])
        np.testing.assert_array_equal(tiny_state[f"{prefix}.v_proj.bias"].numpy(), bias[2 * D :])
        assert not bias[D : 2 * D].any()  # the dropped key bias really is zero


def test_no_key_bias_anywhere(tiny_state):
    assert not [k for k in tiny_state if "k_proj.bias" in k]
    assert len([k for k in tiny_state if "k_proj.weight" in k]) == 4 + 2 * 4


def test_decoder_cross_attention_kv_split(tiny_ct2, tiny_state):
    for i in range(4):
        src = f"decoder/layer_{i}/attention"
        kv, kv_bias = tiny_ct2.variables[f"{src}/linear_1/weight"], tiny_ct2.variables[f"{src}/linear_1/bias"]
        assert kv.shape == (2 * D, D)
        dst = f"model.decoder.layers.{i}.encoder_attn"
        np.testing.assert_array_equal(tiny_state[f"{dst}.k_proj.weight"].numpy(), kv[:D])
        np.testing.assert_array_equal(tiny_state[f"{dst}.v_proj.weight"].numpy(), kv[D:])
        np.testing.assert_array_equal(tiny_state[f"{dst}.v_proj.bias"].numpy(), kv_bias[D:])
        assert not kv_bias[:D].any()
        np.testing.assert_array_equal(
            tiny_state[f"{dst}.q_proj.weight"].numpy(), tiny_ct2.variables[f"{src}/linear_0/weight"]
        )
        np.testing.assert_array_equal(
            tiny_state[f"{dst}.out_proj.weight"].numpy(), tiny_ct2.variables[f"{src}/linear_2/weight"]
        )


def test_other_tensors_copied_verbatim(tiny_ct2, tiny_state):
    pairs = {
        "model.encoder.conv1.weight": "encoder/conv1/weight",
        "model.encoder.conv2.bias": "encoder/conv2/bias",
        "model.encoder.embed_positions.weight": "encoder/position_encodings/encodings",
        "model.decoder.embed_positions.weight": "decoder/position_encodings/encodings",
        "model.decoder.embed_tokens.weight": "decoder/embeddings/weight",
        "model.encoder.layer_norm.weight": "encoder/layer_norm/gamma",
        "model.decoder.layer_norm.bias": "decoder/layer_norm/beta",
        "model.encoder.layers.3.final_layer_norm.weight": "encoder/layer_3/ffn/layer_norm/gamma",
        "model.decoder.layers.2.fc1.weight": "decoder/layer_2/ffn/linear_0/weight",
        "model.decoder.layers.2.fc2.bias": "decoder/layer_2/ffn/linear_1/bias",
        "model.decoder.layers.1.encoder_attn_layer_norm.bias": "decoder/layer_1/attention/layer_norm/beta",
        "model.decoder.layers.0.self_attn_layer_norm.weight": "decoder/layer_0/self_attention/layer_norm/gamma",
    }
    for hf, ct2 in pairs.items():
        np.testing.assert_array_equal(tiny_state[hf].numpy(), tiny_ct2.variables[ct2], err_msg=hf)
    # encoder positions are sinusoids: row 0 is sin(0)=0 for the first half, cos(0)=1 for the rest
    row0 = tiny_state["model.encoder.embed_positions.weight"][0].float()
    assert torch.equal(row0, torch.cat([torch.zeros(D // 2), torch.ones(D // 2)]))


def test_state_dict_tensors_are_writable_copies(tiny_ct2, tiny_state):
    t = tiny_state["model.decoder.layer_norm.weight"]
    assert t.is_contiguous()
    assert not np.shares_memory(t.numpy(), tiny_ct2.variables["decoder/layer_norm/gamma"])


# ---------------------------------------------------------------- int8-quantized CTranslate2 file


def _quantize_int8(ct2: CT2Model) -> dict:
    """The int8 variant the converter writes: every weight matrix/conv as int8 + per-row float32
    `_scale` = 127 / row_absmax (WHISPER_CT2.md, "Quantized files")."""
    out = {}
    for name, value in ct2.variables.items():
        if name.endswith("/weight") and value.ndim >= 2:
            rows = value.astype(np.float32).reshape(value.shape[0], -1)
            absmax = np.abs(rows).max(axis=1)
            scale = (127.0 / np.where(absmax == 0, 1.0, absmax)).astype(np.float32)
            q = np.clip(np.rint(rows * scale[:, None]), -127, 127).astype(np.int8)
            out[name] = q.reshape(value.shape)
            out[name + "_scale"] = scale
        else:
            out[name] = value
    return out


@pytest.fixture(scope="module")
def int8_ct2_dir(tiny_ct2, tiny_ct2_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-int8")
    (folder / "model.bin").write_bytes(ct2_bytes(_quantize_int8(tiny_ct2), dict(tiny_ct2.aliases)))
    for side in ("config.json", "tokenizer.json"):
        shutil.copyfile(tiny_ct2_dir / side, folder / side)
    return folder


@pytest.fixture(scope="module")
def int8_ct2(int8_ct2_dir):
    return read_ct2_model(int8_ct2_dir)


def test_int8_file_dequantizes_within_1_254(tiny_state, int8_ct2):
    int8 = int8_ct2
    scales = [k for k in int8.variables if k.endswith("_scale")]
    assert len(scales) == 47  # as the doc reports for ct2-transformers-converter --quantization int8
    assert "decoder/projection/weight_scale" not in int8.variables
    deq = hf_state_dict(int8, whisper_config(int8))
    assert deq.keys() == tiny_state.keys()
    n_quantized = 0
    for key, original in tiny_state.items():
        got = deq[key]
        if got.dtype == torch.float16:  # not quantized: copied verbatim
            assert torch.equal(got, original), key
            continue
        n_quantized += 1
        assert got.dtype == torch.float32
        ref = original.float().reshape(original.shape[0], -1)
        err = (got.reshape(ref.shape) - ref).abs().max(dim=1).values
        bound = ref.abs().max(dim=1).values / 254
        assert bool((err <= bound * (1 + 1e-5) + 1e-12).all()), key
        assert float(err.max()) > 0  # really went through int8
    # 47 quantized CT2 weights; the 8 fused self-attention weights become 3 HF tensors, the
    # 4 fused cross-attention k/v weights 2
    assert n_quantized == 47 + 8 * 2 + 4 * 1


def test_int8_alias_uses_the_target_scale(int8_ct2):
    """Aliases are not propagated to `_scale`: the projection must dequantize with the embedding's."""
    int8 = int8_ct2
    np.testing.assert_array_equal(
        _weight(int8, "decoder/projection/weight"), _weight(int8, "decoder/embeddings/weight")
    )
    q = int8.variables["decoder/embeddings/weight"].astype(np.float32)
    scale = int8.variables["decoder/embeddings/weight_scale"]
    np.testing.assert_allclose(_weight(int8, "decoder/embeddings/weight"), q / scale[:, None], rtol=1e-6)


def test_int8_ct2_directory_loads_and_transcribes(int8_ct2_dir, sample_audio):
    import hashlib

    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    from weightwise.decode import transcribe
    from weightwise.models import load_model

    model = load_model(str(int8_ct2_dir))
    assert model.info.name == int8_ct2_dir.name
    assert model.info.weights_sha256 == hashlib.sha256((int8_ct2_dir / "model.bin").read_bytes()).hexdigest()
    norm = EnglishTextNormalizer()
    refs = [norm(utt.text) for utt, _ in sample_audio]
    hyps = [norm(transcribe(model, audio).text) for _, audio in sample_audio]
    assert jiwer.wer(refs, hyps) <= 0.2
