"""`compress --out` / `save_compressed`: never delete what weightwise did not write, refuse early.

Every refusal is checked to be one line, exit 2, with the folder's contents (and its parent's)
exactly as before: no temp folders left behind, nothing removed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from weightwise.cli import main
from weightwise.compress import Plan, compress_, save_compressed
from weightwise.errors import InputError
from weightwise.models import load_model

ONE_LAYER = {"rules": [{"match": "model.decoder.layers.0.fc1", "quant": {"bits": 8}}]}


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry under `folder` (relative path -> bytes, None for folders)."""
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


@pytest.fixture()
def plan(tmp_path) -> Path:
    path = tmp_path / "plans" / "q8.json"
    path.parent.mkdir()
    path.write_text(json.dumps(ONE_LAYER))
    return path


def refused(capsys, *args: str, model: str = "whisper-tiny.en") -> str:
    """Run `weightwise compress` expecting exit 2 with one line on stderr; return that line."""
    assert main(["compress", "--model", model, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_a_folder_that_is_not_a_compressed_model_is_refused_and_kept(tmp_path, plan, capsys):
    out = tmp_path / "work"
    out.mkdir()
    (out / "notes.txt").write_text("my thesis")
    (out / "sub").mkdir()
    before = snapshot(tmp_path)
    line = refused(capsys, "--plan", str(plan), "--out", str(out))
    assert str(out) in line and "not a weightwise compressed model" in line
    assert snapshot(tmp_path) == before


def test_out_is_checked_before_the_model_loads(tmp_path, plan, capsys):
    out = tmp_path / "work"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    line = refused(capsys, "--plan", str(plan), "--out", str(out), model="no-such-model")
    assert str(out) in line  # the --out problem, not the unknown model: nothing slow ran first


def test_an_existing_file_is_refused(tmp_path, plan, capsys):
    target = tmp_path / "model.bin"
    target.write_bytes(b"\x00" * 1000)
    before = snapshot(tmp_path)
    line = refused(capsys, "--plan", str(plan), "--out", str(target))
    assert str(target) in line and "file" in line
    assert snapshot(tmp_path) == before


def test_a_path_under_a_file_is_refused(tmp_path, plan, capsys):
    (tmp_path / "notes.txt").write_text("x")
    before = snapshot(tmp_path)
    line = refused(capsys, "--plan", str(plan), "--out", str(tmp_path / "notes.txt" / "c8"))
    assert "notes.txt" in line and "not a folder" in line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("out", [".", "..", "", "a/.."])
def test_the_current_folder_and_its_ancestors_are_refused(tmp_path, plan, capsys, monkeypatch, out):
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    (cwd / "keep.txt").write_text("cwd file")
    (tmp_path / "a" / "keep.txt").write_text("parent file")
    monkeypatch.chdir(cwd)
    before = snapshot(tmp_path)
    line = refused(capsys, "--plan", str(plan), "--out", out)
    assert "current folder" in line
    assert snapshot(tmp_path) == before


def test_an_empty_current_folder_is_refused_too(tmp_path, plan, capsys, monkeypatch):
    cwd = tmp_path / "empty"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert "current folder" in refused(capsys, "--plan", str(plan), "--out", ".")
    assert cwd.is_dir() and not any(cwd.iterdir())


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder nobody may create entries in (a 0555 folder; as root, /sys, which refuses mkdir)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").mkdir()
    except OSError:
        return folder
    (folder / "probe").rmdir()  # root ignores permission bits
    if Path("/sys").is_dir():
        try:
            Path("/sys/weightwise-probe").mkdir()
        except OSError:
            return Path("/sys")
        Path("/sys/weightwise-probe").rmdir()
    pytest.skip("no unwritable folder available to this user")


def test_a_read_only_location_is_refused(tmp_path, plan, capsys):
    folder = unwritable_folder(tmp_path)
    out = folder / "new" / "c8"
    line = refused(capsys, "--plan", str(plan), "--out", str(out))
    assert str(folder) in line and "not writable" in line
    assert not out.parent.exists()


@pytest.fixture(scope="module")
def compressed_model():
    model = load_model("whisper-tiny.en")
    compress_(model, Plan.from_dict(ONE_LAYER, name="q8"))
    return model


@pytest.fixture()
def saved(compressed_model, tmp_path) -> Path:
    return save_compressed(compressed_model, tmp_path / "models" / "c8")


def test_an_own_compressed_model_is_replaced_and_nothing_is_left_beside(saved, tmp_path, capsys):
    plan = tmp_path / "q4.json"
    plan.write_text(json.dumps({"rules": [{"match": "model.decoder.layers.1.fc1", "quant": {"bits": 4}}]}))
    assert main(["compress", "--plan", str(plan), "--out", str(saved)]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in saved.parent.iterdir()) == ["c8"]  # no temp or old folder left
    assert sorted(p.name for p in saved.iterdir()) == ["compressed.json", "model.safetensors"]
    manifest = json.loads((saved / "compressed.json").read_text())
    assert manifest["plan_name"] == "q4" and "model.decoder.layers.1.fc1" in manifest["modules"]


def test_a_compressed_model_folder_with_other_files_is_refused(saved, tmp_path, plan, capsys):
    (saved / "README.md").write_text("my notes on this model")
    before = snapshot(tmp_path / "models")
    line = refused(capsys, "--plan", str(plan), "--out", str(saved))
    assert "README.md" in line
    assert snapshot(tmp_path / "models") == before


def test_out_equal_to_the_input_model_is_refused(saved, tmp_path, plan, capsys):
    before = snapshot(tmp_path / "models")
    line = refused(capsys, "--plan", str(plan), "--out", str(saved), model=str(saved))
    assert "input" in line
    assert snapshot(tmp_path / "models") == before


def test_a_failed_write_keeps_the_old_model_and_leaves_no_temp(compressed_model, saved, monkeypatch):
    import safetensors.torch

    def disk_full(network, filename, *args, **kwargs):
        Path(filename).write_bytes(b"\x00" * 4096)  # a partial file, then the disk is full
        raise OSError(28, "No space left on device")

    before = snapshot(saved.parent)
    monkeypatch.setattr(safetensors.torch, "save_model", disk_full)
    with pytest.raises(InputError, match="No space left on device") as err:
        save_compressed(compressed_model, saved)
    assert "\n" not in str(err.value) and str(saved) in str(err.value)
    assert snapshot(saved.parent) == before


def test_missing_parents_are_made_and_removed_again_on_failure(compressed_model, tmp_path, monkeypatch):
    import safetensors.torch

    def fails(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(safetensors.torch, "save_model", fails)
    with pytest.raises(InputError):
        save_compressed(compressed_model, tmp_path / "deep" / "er" / "c8")
    assert not (tmp_path / "deep").exists()


def test_save_into_a_new_nested_folder(compressed_model, tmp_path):
    out = save_compressed(compressed_model, tmp_path / "x" / "y" / "c8")
    assert sorted(p.name for p in out.iterdir()) == ["compressed.json", "model.safetensors"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["c8"]


def test_a_symlink_out_is_refused(saved, tmp_path, plan, capsys):
    link = tmp_path / "link"
    os.symlink(saved, link)
    before = snapshot(saved.parent)
    assert "symbolic link" in refused(capsys, "--plan", str(plan), "--out", str(link))
    assert link.is_symlink() and snapshot(saved.parent) == before


def test_an_empty_folder_is_used(compressed_model, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    save_compressed(compressed_model, out)
    assert sorted(p.name for p in out.iterdir()) == ["compressed.json", "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]
