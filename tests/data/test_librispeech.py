"""weightwise.data.librispeech: both folder layouts, built from the real test-clean files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from weightwise.data import Manifest, load_manifest, read_librispeech_dir
from weightwise.errors import InputError

CLEAN_MINI = "speech/librispeech_test_clean_mini"


def _records(shared_data_dir: Path) -> list[dict]:
    lines = (shared_data_dir / CLEAN_MINI / "manifest.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _build(shared_data_dir: Path, root: Path, with_chapters: bool) -> Path:
    """Rebuild LibriSpeech's files (flac + .trans.txt) from the shared mini set."""
    for record in _records(shared_data_dir):
        speaker, chapter, _ = record["id"].split("-")
        folder = root / speaker / chapter if with_chapters else root / speaker
        folder.mkdir(parents=True, exist_ok=True)
        source = shared_data_dir / CLEAN_MINI / record["audio"]
        shutil.copyfile(source, folder / f"{record['id']}.flac")
        with open(folder / f"{speaker}-{chapter}.trans.txt", "a") as trans:
            trans.write(f"{record['id']} {record['text']}\n")
    return root


@pytest.mark.parametrize("with_chapters", [True, False], ids=["speaker-chapter", "flat"])
def test_matches_the_shared_manifest(shared_data_dir: Path, tmp_path: Path, with_chapters: bool):
    root = _build(shared_data_dir, tmp_path / "LibriSpeech", with_chapters)
    manifest = read_librispeech_dir(root)
    expected = _records(shared_data_dir)
    assert [u.id for u in manifest] == [r["id"] for r in expected]
    assert [u.text for u in manifest] == [r["text"] for r in expected]
    for utt, record in zip(manifest, expected, strict=True):
        assert utt.speaker == "1089"
        assert utt.duration_s == pytest.approx(record["duration"], abs=1e-3)
        assert utt.audio_path.is_absolute() and utt.audio_path.name == f"{utt.id}.flac"
        assert utt.extra["chapter"] == utt.id.split("-")[1]
    assert manifest.has_text and manifest.source == str(root)
    assert load_manifest(root).utterances == manifest.utterances


def test_round_trips_through_jsonl(shared_data_dir: Path, tmp_path: Path):
    root = _build(shared_data_dir, tmp_path / "ls", with_chapters=True)
    manifest = read_librispeech_dir(root)
    manifest.to_jsonl(root / "manifest.jsonl")
    assert json.loads((root / "manifest.jsonl").read_text().splitlines()[0])["audio"] == (
        "1089/134686/1089-134686-0000.flac"
    )
    assert Manifest.from_jsonl(root / "manifest.jsonl").utterances == manifest.utterances


def test_no_transcripts(tmp_path: Path):
    with pytest.raises(InputError) as err:
        read_librispeech_dir(tmp_path)
    assert "no *.trans.txt" in str(err.value) and str(tmp_path) in str(err.value)
    with pytest.raises(InputError, match="not found"):
        read_librispeech_dir(tmp_path / "absent")


def _break(shared_data_dir: Path, tmp_path: Path, extra_line: str) -> Path:
    root = _build(shared_data_dir, tmp_path / "ls", with_chapters=True)
    trans = root / "1089/134691/1089-134691.trans.txt"
    with open(trans, "a") as handle:
        handle.write(extra_line)
    return trans


def test_line_without_text(shared_data_dir: Path, tmp_path: Path):
    trans = _break(shared_data_dir, tmp_path, "1089-134691-0002\n")
    with pytest.raises(InputError) as err:
        read_librispeech_dir(tmp_path / "ls")
    message = str(err.value)
    assert "\n" not in message
    assert f"{trans.name}:3: transcript line has no text for '1089-134691-0002'" in message


def test_missing_audio(shared_data_dir: Path, tmp_path: Path):
    trans = _break(shared_data_dir, tmp_path, "\n1089-134691-0009 SOME WORDS\n")
    with pytest.raises(InputError) as err:
        read_librispeech_dir(tmp_path / "ls")
    message = str(err.value)
    assert f"{trans.name}:4: audio file not found for '1089-134691-0009'" in message
    assert "1089-134691-0009.flac" in message


def test_duplicate_id(shared_data_dir: Path, tmp_path: Path):
    trans = _break(shared_data_dir, tmp_path, "1089-134691-0000 AGAIN\n")
    with pytest.raises(InputError, match=rf"{trans.name}:3: duplicate id '1089-134691-0000'"):
        read_librispeech_dir(tmp_path / "ls")
