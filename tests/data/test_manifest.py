"""weightwise.data.manifest: the shared format, round trips, and line-numbered errors."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from weightwise.data import Manifest, Utterance, load_manifest
from weightwise.errors import InputError

# (files, total hours) per set, from shared/data/README.md
SHARED_SETS = {
    "speech/librispeech_test_other_mini": (100, 0.213),
    "speech/librispeech_test_clean_mini": (4, 0.006),
    "speech/arctic_kathleen": (500, 0.422),
    "speech/fsdd_digits": (600, 0.073),
    "speech/librispeech_train_clean_100_untranscribed": (251, 0.872),
    "noise/speech_commands_background": (6, 0.111),
    "noise/babble_librispeech_derived": (4, 0.033),
}


def _write_wav(path: Path, duration_s: float = 0.25, rate_hz: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(rate_hz * duration_s), dtype=np.float32), rate_hz)
    return path


def _write_manifest(folder: Path, lines: list[str]) -> Path:
    path = folder / "manifest.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _line(uid: str = "u1", audio: str = "a.wav", **fields) -> str:
    return json.dumps({"id": uid, "audio": audio, "text": "hello", **fields})


def _error(path: Path, **kwargs) -> str:
    with pytest.raises(InputError) as err:
        Manifest.from_jsonl(path, **kwargs)
    message = str(err.value)
    assert "\n" not in message and path.name in message
    return message


@pytest.mark.parametrize("name", sorted(SHARED_SETS))
def test_reads_every_shared_manifest(shared_data_dir: Path, name: str):
    files, hours = SHARED_SETS[name]
    manifest = Manifest.from_jsonl(shared_data_dir / name / "manifest.jsonl")
    assert len(manifest) == files
    assert manifest.total_duration_s / 3600 == pytest.approx(hours, abs=0.0006)
    assert all(u.audio_path.is_absolute() and u.audio_path.is_file() for u in manifest)
    assert manifest.has_text == (name.startswith("speech/") and "untranscribed" not in name)


def test_fields_of_a_known_utterance(shared_data_dir: Path):
    folder = shared_data_dir / "speech/librispeech_test_clean_mini"
    manifest = load_manifest(folder)
    utt = manifest[1]
    assert utt.id == "1089-134686-0001"
    assert utt.text == "STUFF IT INTO YOU HIS BELLY COUNSELLED HIM"
    assert utt.speaker == "1089" and utt.duration_s == 3.275
    assert utt.audio_path == (folder / "audio/1089/1089-134686-0001.flac").resolve()
    assert utt.extra["gender"] == "male" and "id" not in utt.extra and "audio" not in utt.extra
    assert utt.line == 2
    assert manifest.source == str(folder / "manifest.jsonl")


def test_is_immutable(shared_data_dir: Path):
    manifest = load_manifest(shared_data_dir / "speech/librispeech_test_clean_mini")
    with pytest.raises(dataclasses.FrozenInstanceError):
        manifest[0].text = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        manifest[0].extra["gender"] = "female"  # type: ignore[index]
    assert isinstance(manifest.utterances, tuple)


def test_extra_is_deeply_read_only_and_hashable():
    utt = Utterance("x", Path("/a.wav"), None, extra={"tags": ["a", "b"], "meta": {"k": 1}})
    assert utt.extra["tags"] == ("a", "b")
    with pytest.raises(TypeError):
        utt.extra["meta"]["k"] = 2  # type: ignore[index]
    assert hash(utt) == hash(Utterance("x", Path("/a.wav"), None, extra={"other": 1}))


def test_head_len_iter(shared_data_dir: Path):
    manifest = load_manifest(shared_data_dir / "speech/arctic_kathleen")
    first = manifest.head(3)
    assert len(first) == 3 and [u.id for u in first] == [u.id for u in manifest.utterances[:3]]
    assert len(manifest.head(10_000)) == 500
    for bad in (0, -1):
        with pytest.raises(InputError, match=">= 1"):
            manifest.head(bad)


def test_concat_keeps_order_and_names_both_sources(shared_data_dir: Path):
    arctic = load_manifest(shared_data_dir / "speech/arctic_kathleen")
    other = load_manifest(shared_data_dir / "speech/librispeech_test_other_mini")
    joined = Manifest.concat([arctic.head(2), other.head(3)])
    assert [u.id for u in joined] == [u.id for u in arctic.utterances[:2] + other.utterances[:3]]
    assert joined.source == f"{arctic.source} + {other.source}"
    assert Manifest.concat([arctic]) is arctic
    with pytest.raises(InputError, match=r"duplicate id .*also in") as err:
        Manifest.concat([arctic.head(2), other.head(1), arctic.head(1)])
    assert "\n" not in str(err.value) and arctic.source in str(err.value)
    with pytest.raises(InputError, match="at least one"):
        Manifest.concat([])


def test_round_trip_keeps_fields_and_writes_relative_audio(tmp_path: Path, shared_data_dir: Path):
    source = load_manifest(shared_data_dir / "speech/fsdd_digits").head(5)
    outside = Manifest.from_jsonl(source.source).head(5)
    out = tmp_path / "copy" / "manifest.jsonl"
    outside.to_jsonl(out)
    again = Manifest.from_jsonl(out)
    assert again.utterances == outside.utterances  # audio stays absolute: outside the folder
    assert json.loads(out.read_text().splitlines()[0])["audio"].startswith("/")

    _write_wav(tmp_path / "local" / "sub" / "a.wav")
    local = Manifest((Utterance("a", tmp_path / "local/sub/a.wav", "hi", "s1", 0.25),), "t")
    local.to_jsonl(tmp_path / "local" / "m.jsonl")
    record = json.loads((tmp_path / "local" / "m.jsonl").read_text())
    expected = {"id": "a", "audio": "sub/a.wav", "text": "hi", "speaker": "s1", "duration": 0.25}
    assert record == expected
    assert list(tmp_path.joinpath("local").glob(".*tmp")) == []  # no temp file left behind


def test_to_jsonl_replaces_existing_file(tmp_path: Path):
    _write_wav(tmp_path / "a.wav")
    out = _write_manifest(tmp_path, ["old content"])
    Manifest((Utterance("a", tmp_path / "a.wav", None),), "t").to_jsonl(out)
    assert Manifest.from_jsonl(out)[0].text is None
    assert len(out.read_text().splitlines()) == 1


def test_to_jsonl_gives_the_file_the_umask_mode(tmp_path: Path):
    _write_wav(tmp_path / "a.wav")
    old = os.umask(0o022)
    try:
        Manifest((Utterance("a", tmp_path / "a.wav", None),), "t").to_jsonl(tmp_path / "m.jsonl")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.jsonl").stat().st_mode) == 0o644  # as open(..., "w") would


def test_check_audio_decodes_every_file(tmp_path: Path, shared_data_dir: Path):
    flac = shared_data_dir / "speech/librispeech_test_clean_mini/audio/1089/1089-134691-0000.flac"
    (tmp_path / "cut.flac").write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    sf.write(tmp_path / "loud.wav", np.full(1600, 1e30, dtype=np.float32), 16000, subtype="FLOAT")
    sf.write(tmp_path / "nan.wav", np.array([0.1, np.nan] * 800, dtype=np.float32), 16000, subtype="FLOAT")
    _write_wav(tmp_path / "a.wav")
    for bad, problem in (
        ("cut.flac", "not a readable audio file"),
        ("loud.wav", "samples up to 1e+30"),
        ("nan.wav", "non-finite"),
    ):
        path = _write_manifest(tmp_path, [_line("a", "a.wav"), _line("b", bad)])
        manifest = Manifest.from_jsonl(path)  # the headers are fine: only decoding finds these
        with pytest.raises(InputError) as err:
            manifest.check_audio()
        message = str(err.value)
        assert message.startswith(f"{path}:2: {tmp_path / bad}: ") and problem in message, message
        with pytest.raises(InputError) as err:
            Manifest.from_paths([tmp_path / "a.wav", tmp_path / bad]).check_audio()
        assert str(err.value).startswith(f"{tmp_path / bad}: ") and problem in str(err.value)
    Manifest.from_paths([tmp_path / "a.wav", flac]).check_audio()  # good files pass


def test_blank_lines_missing_text_and_absolute_audio(tmp_path: Path):
    wav = _write_wav(tmp_path / "elsewhere" / "b.wav")
    _write_wav(tmp_path / "a.wav")
    lines = [json.dumps({"id": "a", "audio": "a.wav"}), "", "   ", _line("b", str(wav))]
    manifest = Manifest.from_jsonl(_write_manifest(tmp_path, lines))
    assert [u.id for u in manifest] == ["a", "b"]
    assert manifest[0].text is None and manifest[0].duration_s is None and not manifest.has_text
    assert manifest[1].audio_path == wav and manifest[1].line == 4
    assert manifest.total_duration_s == 0.0


def test_missing_manifest_file(tmp_path: Path):
    message = _error(tmp_path / "nope.jsonl")
    assert "manifest file not found" in message


def test_empty_manifest(tmp_path: Path):
    assert "empty manifest" in _error(_write_manifest(tmp_path, ["", "  "]))


@pytest.mark.parametrize(
    "bad_line,needle",
    [
        ('{"id": "u2", "audio": ', "malformed manifest line (Expecting value"),
        ('["u2", "a.wav"]', "malformed manifest line (expected a JSON object, got list)"),
        ('{"id": "u2"}', "missing field 'audio'"),
        ('{"audio": "a.wav"}', "missing field 'id'"),
        ('{"id": 7, "audio": "a.wav"}', "field 'id' must be a non-empty string"),
        ('{"id": "u2", "audio": "a.wav", "text": 5}', "field 'text' must be a string or null"),
        ('{"id": "u2", "audio": "a.wav", "duration": -1}', "field 'duration'"),
        ('{"id": "u2", "audio": "a.wav", "duration": "3.2"}', "field 'duration'"),
        ('{"id": "u2", "audio": "a.wav", "duration": NaN}', "field 'duration'"),
        ('{"id": "u2", "audio": "a.wav", "duration": true}', "field 'duration'"),
        (_line("u1"), "duplicate id 'u1' (first on line 1)"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path: Path, bad_line: str, needle: str):
    _write_wav(tmp_path / "a.wav")
    path = _write_manifest(tmp_path, [_line("u1"), "", bad_line])
    message = _error(path, check_files=False)
    assert "manifest.jsonl:3: " in message
    assert needle in message


def test_non_utf8_line(tmp_path: Path):
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(_line().encode() + b"\n" + b'{"id": "\xff"}\n')
    assert "manifest.jsonl:2: malformed manifest line (not UTF-8" in _error(path)


def test_missing_audio_file_reported_with_line(tmp_path: Path):
    _write_wav(tmp_path / "a.wav")
    path = _write_manifest(tmp_path, [_line("u1"), _line("u2", "gone.wav")])
    message = _error(path)
    assert "manifest.jsonl:2: audio file not found:" in message and "gone.wav" in message
    unchecked = Manifest.from_jsonl(path, check_files=False)
    assert len(unchecked) == 2
    with pytest.raises(InputError, match=r"manifest\.jsonl:2: audio file not found"):
        unchecked.check_files()


def test_from_paths(tmp_path: Path, shared_data_dir: Path):
    flac = shared_data_dir / "speech/librispeech_test_clean_mini/audio/1089/1089-134691-0000.flac"
    wav = _write_wav(tmp_path / "tone.wav", duration_s=0.5, rate_hz=8000)
    manifest = Manifest.from_paths([flac, str(wav)])
    assert [u.id for u in manifest] == ["1089-134691-0000", "tone"]
    assert manifest[0].duration_s == pytest.approx(2.085, abs=1e-3)
    assert manifest[1].duration_s == pytest.approx(0.5)
    assert not manifest.has_text and manifest[1].audio_path.is_absolute()


def test_from_paths_errors(tmp_path: Path):
    with pytest.raises(InputError, match="no audio files"):
        Manifest.from_paths([])
    with pytest.raises(InputError, match=r"missing\.wav: audio file not found"):
        Manifest.from_paths([tmp_path / "missing.wav"])
    a = _write_wav(tmp_path / "x" / "same.wav")
    b = _write_wav(tmp_path / "y" / "same.wav")
    with pytest.raises(InputError, match="same id 'same'"):
        Manifest.from_paths([a, b])


def test_load_manifest_dispatch(tmp_path: Path, shared_data_dir: Path):
    folder = shared_data_dir / "speech/librispeech_test_clean_mini"
    assert len(load_manifest(folder / "manifest.jsonl")) == 4
    assert len(load_manifest(folder)) == 4
    (tmp_path / "notes.txt").write_text("x")
    for target, needle in [
        (tmp_path, "not a manifest"),
        (tmp_path / "notes.txt", "not a manifest"),
        (tmp_path / "missing", "manifest not found"),
    ]:
        with pytest.raises(InputError) as err:
            load_manifest(target)
        assert needle in str(err.value) and target.name in str(err.value)
