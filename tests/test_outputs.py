"""weightwise.outputs: output paths checked before the work, files written atomically, no temp
files left behind."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from weightwise.errors import InputError
from weightwise.outputs import (
    atomic_writer,
    check_output_path,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)


def _one_line(err: pytest.ExceptionInfo, *needles: str) -> str:
    message = str(err.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


def _unwritable_dir(tmp_path: Path) -> Path:
    """A directory this process cannot create files in: chmod 555, or /proc when we are root
    (permission bits do not stop root; /proc takes no new files from anyone)."""
    if os.geteuid() == 0:
        return Path("/proc")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    return locked


# ---------------------------------------------------------------- check_output_path


def test_a_fresh_path_passes_and_nothing_is_created(tmp_path):
    before = sorted(tmp_path.rglob("*"))
    assert check_output_path(tmp_path / "new" / "deeper" / "r.json") == tmp_path / "new" / "deeper" / "r.json"
    assert check_output_path(tmp_path / "r.json", kind="dir") == tmp_path / "r.json"
    assert sorted(tmp_path.rglob("*")) == before  # no probe file, no parent directories


def test_existing_directory_where_a_file_is_wanted(tmp_path):
    with pytest.raises(InputError) as err:
        check_output_path(tmp_path, flag="--out")
    _one_line(err, f"--out {tmp_path}", "existing directory")


def test_existing_file_where_a_directory_is_wanted(tmp_path):
    file = tmp_path / "f.json"
    file.write_text("{}")
    with pytest.raises(InputError) as err:
        check_output_path(file, kind="dir")
    _one_line(err, str(file), "existing file")


def test_path_under_a_file(tmp_path):
    file = tmp_path / "clip.wav"
    file.write_bytes(b"RIFF")
    for out in (file / "x.json", file / "sub" / "x.json"):
        with pytest.raises(InputError) as err:
            check_output_path(out)
        _one_line(err, str(out), f"{file} is a file, not a directory")


def test_read_only_location(tmp_path):
    locked = _unwritable_dir(tmp_path)
    for out in (locked / "r.json", locked / "missing" / "r.json"):
        with pytest.raises(InputError) as err:
            check_output_path(out)
        _one_line(err, str(out), f"cannot create files in {locked}")


def test_not_a_regular_file():
    with pytest.raises(InputError) as err:
        check_output_path("/dev/null")
    _one_line(err, "/dev/null", "not a regular file")


def test_empty_path():
    with pytest.raises(InputError) as err:
        check_output_path("", flag="-o")
    _one_line(err, "-o", "empty output path")


def test_same_file_as_an_input(tmp_path, monkeypatch):
    source = tmp_path / "data.jsonl"
    source.write_text("{}\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(source)
    hard = tmp_path / "hard.jsonl"
    os.link(source, hard)
    monkeypatch.chdir(tmp_path)
    for out in (source, Path("data.jsonl"), tmp_path / "sub" / ".." / "data.jsonl", link, hard):
        with pytest.raises(InputError) as err:
            check_output_path(out, inputs=[None, tmp_path / "other.wav", source])
        _one_line(err, str(out), "is also an input", str(source))
    check_output_path(tmp_path / "data.json", inputs=[source])  # a different file is fine


def test_a_not_yet_written_output_listed_as_input(tmp_path):
    with pytest.raises(InputError):  # e.g. profile --plot p.png with p.png also an input
        check_output_path(tmp_path / "p.png", inputs=[tmp_path / "p.png"])


def test_unknown_kind(tmp_path):
    with pytest.raises(ValueError):
        check_output_path(tmp_path / "x", kind="socket")


# ---------------------------------------------------------------- atomic writers


def test_writers_round_trip_and_create_parents(tmp_path):
    write_json_atomic(tmp_path / "a" / "r.json", {"wer": 0.5, "text": "naïve"})
    assert json.loads((tmp_path / "a" / "r.json").read_text(encoding="utf-8")) == {"wer": 0.5, "text": "naïve"}
    assert "naïve" in (tmp_path / "a" / "r.json").read_text(encoding="utf-8")  # not \\u-escaped
    write_text_atomic(tmp_path / "t.md", "# title\n")
    assert (tmp_path / "t.md").read_text() == "# title\n"
    write_bytes_atomic(tmp_path / "b.png", b"\x89PNG")
    assert (tmp_path / "b.png").read_bytes() == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b.png", "r.json", "t.md"]


def test_failure_mid_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as sink:
            sink.write("half of the new")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_unserializable_json_writes_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "r.json", {"x": object()})
    assert list(tmp_path.iterdir()) == []


def test_os_errors_become_one_line_input_errors(tmp_path):
    locked = _unwritable_dir(tmp_path)
    with pytest.raises(InputError) as err:
        write_text_atomic(locked / "r.json", "{}")
    _one_line(err, str(locked / "r.json"), "cannot write")
    if locked != Path("/proc"):
        assert list(locked.iterdir()) == []


def test_new_files_get_umask_modes_and_replaced_files_keep_theirs(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "new.json", "{}")
        assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o644  # not mkstemp's 0o600
        kept = tmp_path / "kept.json"
        kept.write_text("{}")
        kept.chmod(0o640)
        write_text_atomic(kept, "[]")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and kept.read_text() == "[]"
    finally:
        os.umask(old)
