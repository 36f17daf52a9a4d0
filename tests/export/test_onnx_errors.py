"""A broken export folder is a one-line error naming the file (CLI exit 2), never a traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from weightwise.cli import main
from weightwise.errors import InputError
from weightwise.models.onnx_engine import MANIFEST_NAME, load_onnx_export
from weightwise.models.registry import file_sha256


def _copy(export: Path, to: Path) -> Path:
    """The export under `to`, its files hard-linked (cheap); rewrite a file before changing it."""
    to.mkdir()
    for file in export.iterdir():
        os.link(file, to / file.name)
    return to


def _rewrite(file: Path, data: bytes) -> None:
    file.unlink()  # break the hard link: the session's export stays intact
    file.write_bytes(data)


def _eval(capsys, model: Path | str, out: Path) -> tuple[int, str]:
    code = main(["eval", "--engine", "onnxruntime", "--model", str(model), "--data", "samples", "--out", str(out)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return code, lines[0]


def test_altered_onnx_file_is_a_sha256_error(fp32_export, tmp_path, capsys):
    folder = _copy(fp32_export, tmp_path / "export")
    data = bytearray((folder / "decoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside a weight
    _rewrite(folder / "decoder.onnx", bytes(data))
    code, line = _eval(capsys, folder, tmp_path / "out.json")
    assert code == 2 and str(folder / "decoder.onnx") in line and "sha256" in line
    assert not (tmp_path / "out.json").exists()


def test_corrupt_onnx_file_with_a_matching_manifest_is_a_load_error(fp32_export, tmp_path):
    folder = _copy(fp32_export, tmp_path / "export")
    _rewrite(folder / "encoder.onnx", (folder / "encoder.onnx").read_bytes()[:4096])  # truncated
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["files"]["encoder.onnx"] = file_sha256(folder / "encoder.onnx")  # a consistent, broken export
    _rewrite(folder / MANIFEST_NAME, json.dumps(manifest).encode())
    with pytest.raises(InputError, match="encoder.onnx: ONNX Runtime cannot load it") as err:
        load_onnx_export(folder)
    assert "\n" not in str(err.value)


def test_manifest_pointing_to_a_missing_file(fp32_export, tmp_path, capsys):
    folder = _copy(fp32_export, tmp_path / "export")
    (folder / "encoder.onnx").unlink()
    code, line = _eval(capsys, folder, tmp_path / "out.json")
    assert code == 2 and str(folder / "encoder.onnx") in line and "missing" in line


def test_engine_onnxruntime_with_a_model_name_is_one_line(tmp_path, capsys):
    code, line = _eval(capsys, "whisper-tiny.en", tmp_path / "out.json")
    assert code == 2 and "whisper-tiny.en" in line and "not an ONNX export folder" in line


def test_export_folder_without_engine_names_the_flag(fp32_export, tmp_path, capsys):
    code = main(["eval", "--model", str(fp32_export), "--data", "samples", "--out", str(tmp_path / "o.json")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "--engine onnxruntime" in err


def test_export_refuses_a_folder_holding_other_files(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    code = main(["export", "--model", "whisper-tiny.en", "--format", "onnx", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and str(tmp_path) in err
    assert (tmp_path / "keep.txt").read_text() == "mine"


def _rehash(folder: Path, edit=lambda manifest: None) -> None:
    """The manifest's sha256s made consistent with the folder's files (after `edit`): only the
    interface check is left to catch the mismatch."""
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["files"] = {name: file_sha256(folder / name) for name in manifest["files"]}
    edit(manifest)
    _rewrite(folder / MANIFEST_NAME, json.dumps(manifest).encode())


def test_encoder_and_decoder_swapped_is_one_line(fp32_export, tmp_path, capsys):
    folder = _copy(fp32_export, tmp_path / "export")
    (folder / "encoder.onnx").rename(folder / "x")
    (folder / "decoder.onnx").rename(folder / "encoder.onnx")
    (folder / "x").rename(folder / "decoder.onnx")
    _rehash(folder)
    code, line = _eval(capsys, folder, tmp_path / "out.json")  # before the check: a traceback mid-run
    assert code == 2 and str(folder / "encoder.onnx") in line and "input_features" in line


def test_file_of_another_model_is_one_line(fp32_export, tmp_path):
    """A manifest whose config (here: 128 mel bins, as large-v3's) is not the files' own model."""
    folder = _copy(fp32_export, tmp_path / "export")
    _rehash(folder, lambda manifest: manifest["config"].update(n_mels=128))
    with pytest.raises(InputError, match=r"encoder.onnx: input_features has shape \['batch', 80, 'frames'\]") as err:
        load_onnx_export(folder)
    assert "\n" not in str(err.value) and "128" in str(err.value)
