"""weightwise.models.ct2: the CTranslate2 model.bin reader, on the real tiny.en file and on files
written here by a test-local writer (tests/models/conftest.py) that follows WHISPER_CT2.md."""

from __future__ import annotations

import hashlib
import struct
from collections import Counter

import numpy as np
import pytest
from ct2_writer import ct2_bytes, ct2_string  # tests/models/ct2_writer.py

from weightwise.errors import InputError
from weightwise.models.ct2 import read_ct2_model

# ---------------------------------------------------------------- the real tiny.en file


def test_real_tiny_variable_inventory(tiny_ct2):
    assert tiny_ct2.spec_name == "WhisperSpec"
    assert tiny_ct2.binary_version == 6
    assert len(tiny_ct2.variables) == 148
    assert dict(tiny_ct2.aliases) == {"decoder/projection/weight": "decoder/embeddings/weight"}
    dtypes = Counter(v.dtype for v in tiny_ct2.variables.values() if v.ndim > 0)
    assert dtypes == Counter({np.dtype(np.float16): 139})  # every tensor is float16
    scalars = {k: v for k, v in tiny_ct2.variables.items() if v.ndim == 0}
    assert len(scalars) == 9
    assert all(v.dtype in (np.int8, np.int16) for v in scalars.values())


def test_real_tiny_scalars(tiny_ct2):
    # values from WHISPER_CT2.md's scalar table for tiny
    assert tiny_ct2.scalar("decoder/num_heads") == 6
    assert tiny_ct2.scalar("encoder/num_heads") == 6
    assert isinstance(tiny_ct2.scalar("encoder/num_heads"), int)
    assert tiny_ct2.scalar("decoder/activation") == 3
    assert tiny_ct2.scalar("decoder/alignment_layer") == -1
    assert tiny_ct2.scalar("decoder/scale_embeddings") == 0


def test_real_tiny_alias_resolves_to_the_embedding(tiny_ct2):
    projection = tiny_ct2.get("decoder/projection/weight")
    embedding = tiny_ct2.variables["decoder/embeddings/weight"]
    assert projection.shape == (51864, 384)
    assert projection is embedding
    assert "decoder/projection/weight" not in tiny_ct2.variables


def test_real_tiny_sha256_matches_hashlib(tiny_ct2, tiny_ct2_dir):
    expected = hashlib.sha256((tiny_ct2_dir / "model.bin").read_bytes()).hexdigest()
    assert tiny_ct2.sha256 == expected


def test_real_tiny_tensor_matches_bytes_parsed_by_hand(tiny_ct2, tiny_ct2_dir):
    """Locate one variable's record in the raw bytes and decode it with struct, not the reader."""
    buf = (tiny_ct2_dir / "model.bin").read_bytes()
    for name in ("decoder/layer_norm/gamma", "encoder/conv1/weight"):
        at = buf.find(ct2_string(name))
        assert at > 0 and buf.find(ct2_string(name), at + 1) == -1
        pos = at + len(ct2_string(name))
        rank = buf[pos]
        dims = struct.unpack_from(f"<{rank}I", buf, pos + 1)
        pos += 1 + 4 * rank
        dtype_id, nbytes = buf[pos], struct.unpack_from("<I", buf, pos + 1)[0]
        pos += 5
        assert dtype_id == 4  # float16
        assert nbytes == 2 * int(np.prod(dims))
        expected = np.frombuffer(buf[pos : pos + nbytes], dtype="<f2").reshape(dims)
        got = tiny_ct2.variables[name]
        assert got.shape == tuple(dims)
        np.testing.assert_array_equal(got, expected)
    assert tiny_ct2.variables["encoder/conv1/weight"].shape == (384, 80, 3)


def test_directory_argument_reads_its_model_bin(tiny_ct2, tiny_ct2_dir):
    again = read_ct2_model(tiny_ct2_dir)
    assert again.sha256 == tiny_ct2.sha256
    assert sorted(again.variables) == sorted(tiny_ct2.variables)


def test_arrays_are_read_only(tiny_ct2):
    with pytest.raises(ValueError):
        tiny_ct2.variables["decoder/layer_norm/gamma"][0] = 1.0


# ---------------------------------------------------------------- a file written here

BF16_VALUES = np.array([1.0, -2.5, 0.15625, 256.0, -0.0078125, 2.0**127, -3.0 * 2.0**-130], dtype=np.float32)


def _bf16_top_halves(values: np.ndarray) -> np.ndarray:
    bits = values.view(np.uint32)
    assert not (bits & 0xFFFF).any(), "test values must be exact in bfloat16"
    return (bits >> 16).astype(np.uint16)


def _small_variables() -> dict:
    return {
        "enc/weight_f32": np.array([[1.5, -2.0, 3.25], [0.0, 1e-3, -7.0]], dtype=np.float32),
        "enc/bias_i8": np.array([-128, -1, 0, 127], dtype=np.int8),
        "dec/emb/weight": np.array([[0.5, -0.25], [65504.0, -1.0]], dtype=np.float16),
        "dec/bf16": ("bfloat16", _bf16_top_halves(BF16_VALUES)),
        "dec/num_heads": np.array(6, dtype=np.int16),
        "dec/table_i32": np.arange(6, dtype=np.int32).reshape(1, 2, 3) - 3,
    }


def test_own_file_round_trip(tmp_path, write_ct2):
    variables = _small_variables()
    path = write_ct2(
        tmp_path / "model.bin", variables, {"dec/proj/weight": "dec/emb/weight"}, spec_name="TestSpec", revision=7
    )
    model = read_ct2_model(path)
    assert model.spec_name == "TestSpec"
    assert model.binary_version == 6
    assert list(model.variables) == sorted(variables)
    assert dict(model.aliases) == {"dec/proj/weight": "dec/emb/weight"}
    assert model.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()

    f32 = model.variables["enc/weight_f32"]
    assert f32.dtype == np.float32 and f32.shape == (2, 3)
    np.testing.assert_array_equal(f32, [[1.5, -2.0, 3.25], [0.0, np.float32(1e-3), -7.0]])
    i8 = model.variables["enc/bias_i8"]
    assert i8.dtype == np.int8 and i8.tolist() == [-128, -1, 0, 127]
    f16 = model.variables["dec/emb/weight"]
    assert f16.dtype == np.float16 and f16.tolist() == [[0.5, -0.25], [65504.0, -1.0]]
    bf16 = model.variables["dec/bf16"]  # widened to float32
    assert bf16.dtype == np.float32 and bf16.shape == BF16_VALUES.shape == (7,)
    assert bf16.tolist() == BF16_VALUES.tolist()
    i32 = model.variables["dec/table_i32"]
    assert i32.dtype == np.int32 and i32.shape == (1, 2, 3) and i32.ravel().tolist() == [-3, -2, -1, 0, 1, 2]
    assert model.variables["dec/num_heads"].shape == ()
    assert model.scalar("dec/num_heads") == 6

    # .get() follows the alias; a plain name returns itself
    np.testing.assert_array_equal(model.get("dec/proj/weight"), [[0.5, -0.25], [65504.0, -1.0]])
    assert model.get("dec/proj/weight") is model.variables["dec/emb/weight"]
    assert model.get("enc/weight_f32") is f32
    with pytest.raises(KeyError):
        model.get("dec/missing")


def test_bfloat16_truncates_to_the_top_half(tmp_path, write_ct2):
    """A bf16 value is the float32 whose low 16 bits are zero; check a non-exact float too."""
    value = np.array([np.pi], dtype=np.float32)
    top = (value.view(np.uint32) >> 16).astype(np.uint16)
    model = read_ct2_model(write_ct2(tmp_path / "model.bin", {"x": ("bfloat16", top)}))
    expected = (value.view(np.uint32) & 0xFFFF0000).view(np.float32)
    assert model.variables["x"].tolist() == expected.tolist()
    assert model.variables["x"][0] == pytest.approx(np.pi, rel=2**-7)


def test_file_without_aliases(tmp_path, write_ct2):
    model = read_ct2_model(write_ct2(tmp_path / "model.bin", {"a": np.ones(2, np.float32)}))
    assert dict(model.aliases) == {}
    assert model.get("a").tolist() == [1.0, 1.0]


# ---------------------------------------------------------------- broken files


def _assert_input_error_naming(path, *words):
    with pytest.raises(InputError) as err:
        read_ct2_model(path)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    for word in words:
        assert word in message
    return message


def _cut_points(data: bytes) -> dict[str, int]:
    """Byte offsets inside each region of a file made from _small_variables()."""
    alias_len = 4 + len(ct2_string("dec/proj/weight")) + len(ct2_string("dec/emb/weight"))
    return {
        "version": 2,
        "spec name": 7,
        "variable count": 22,
        "first name": 30,
        "middle": len(data) // 2,
        "last data byte": len(data) - alias_len - 1,
        "alias count": len(data) - alias_len + 2,
        "alias target": len(data) - 5,
    }


@pytest.mark.parametrize(
    "region",
    ["version", "spec name", "variable count", "first name", "middle", "last data byte", "alias count", "alias target"],
)
def test_truncated_file_is_an_input_error(tmp_path, region):
    data = ct2_bytes(_small_variables(), {"dec/proj/weight": "dec/emb/weight"})
    path = tmp_path / "model.bin"
    path.write_bytes(data[: _cut_points(data)[region]])
    _assert_input_error_naming(path)


def test_truncated_inside_variable_data_says_truncated(tmp_path):
    data = ct2_bytes(_small_variables())
    path = tmp_path / "model.bin"
    path.write_bytes(data[: len(data) // 2])
    _assert_input_error_naming(path, "truncated")


@pytest.mark.parametrize("version", [0, 7, 1000, 2**32 - 1])
def test_wrong_version_number(tmp_path, write_ct2, version):
    path = write_ct2(tmp_path / "model.bin", _small_variables(), version=version)
    _assert_input_error_naming(path, str(version))


def test_too_old_version(tmp_path, write_ct2):
    path = write_ct2(tmp_path / "model.bin", _small_variables(), version=3)
    _assert_input_error_naming(path, "3", "too old")


@pytest.mark.parametrize("garbage", [b"\x00", b"garbage!", b"\x01\x00\x00\x00" * 8])
def test_trailing_garbage(tmp_path, garbage):
    path = tmp_path / "model.bin"
    path.write_bytes(ct2_bytes(_small_variables(), {"dec/proj/weight": "dec/emb/weight"}) + garbage)
    _assert_input_error_naming(path, "trailing")


def test_unknown_dtype_id(tmp_path):
    data = bytearray(ct2_bytes({"a": np.ones(2, np.float32)}))
    name_end = data.find(ct2_string("a")) + len(ct2_string("a"))
    dtype_at = name_end + 1 + 4  # rank byte, one uint32 dim
    assert data[dtype_at] == 0
    data[dtype_at] = 9
    path = tmp_path / "model.bin"
    path.write_bytes(bytes(data))
    _assert_input_error_naming(path, "dtype")


def test_missing_file_and_directory_without_model_bin(tmp_path):
    _assert_input_error_naming(tmp_path / "nope.bin", "not found")
    with pytest.raises(InputError) as err:
        read_ct2_model(tmp_path)
    assert str(tmp_path / "model.bin") in str(err.value)


def test_empty_file(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"")
    _assert_input_error_naming(path)


# ---------------------------------------------------------------- regressions (found in review)


def test_file_missing_last_byte_is_reported_as_truncated(tmp_path):
    data = ct2_bytes(_small_variables(), {"dec/proj/weight": "dec/emb/weight"})
    path = tmp_path / "model.bin"
    path.write_bytes(data[:-1])
    _assert_input_error_naming(path, "truncated")


def test_file_cut_before_alias_section_is_rejected(tmp_path):
    data = ct2_bytes(_small_variables(), {"dec/proj/weight": "dec/emb/weight"})
    alias_len = 4 + len(ct2_string("dec/proj/weight")) + len(ct2_string("dec/emb/weight"))
    path = tmp_path / "model.bin"
    path.write_bytes(data[:-alias_len])
    _assert_input_error_naming(path)


def test_byte_count_not_matching_shape_is_an_input_error(tmp_path):
    data = bytearray(ct2_bytes({"a": np.ones((2, 3), np.float32), "b": np.ones(1, np.float32)}))
    name_end = data.find(ct2_string("a")) + len(ct2_string("a"))
    dims_at = name_end + 1
    assert struct.unpack_from("<II", data, dims_at) == (2, 3)
    struct.pack_into("<II", data, dims_at, 2, 2)  # claims 4 floats, 24 bytes follow
    path = tmp_path / "model.bin"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError):
        read_ct2_model(path)


def test_non_utf8_name_is_an_input_error(tmp_path):
    data = ct2_bytes({"ab": np.ones(1, np.float32)}).replace(b"ab\x00", b"\xff\xfe\x00")
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    with pytest.raises(InputError):
        read_ct2_model(path)
