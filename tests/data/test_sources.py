"""weightwise.data.sources and iter_audio: the one meaning of "samples", and reading a manifest's audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from weightwise.data import SAMPLES, Manifest, iter_audio, load_manifest, open_manifest, sample_manifest
from weightwise.errors import InputError


def test_samples_means_the_bundled_set_even_beside_a_folder_of_that_name(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / SAMPLES).mkdir()  # a local folder named "samples" does not shadow the bundled set
    assert open_manifest("samples") == sample_manifest()
    assert [u.id for u in open_manifest("samples", 2)] == [u.id for u in sample_manifest()][:2]
    with pytest.raises(InputError, match="not a manifest"):
        load_manifest("samples")  # load_manifest itself takes paths only


def test_open_manifest_opens_paths_and_cuts_to_the_limit(shared_data_dir: Path):
    folder = shared_data_dir / "speech/librispeech_test_clean_mini"
    assert len(open_manifest(folder)) == len(load_manifest(folder)) == 4
    assert [u.id for u in open_manifest(str(folder / "manifest.jsonl"), 3)] == [u.id for u in load_manifest(folder)][:3]
    assert len(open_manifest(folder, None)) == 4


def test_iter_audio_decodes_in_order_at_16_khz(shared_data_dir: Path):
    manifest = load_manifest(shared_data_dir / "speech/librispeech_test_clean_mini")
    pairs = list(iter_audio(manifest))
    assert [u.id for u, _ in pairs] == [u.id for u in manifest]
    for utt, samples in pairs:
        info = sf.info(utt.audio_path)
        assert info.samplerate == 16000 and samples.dtype == np.float32 and len(samples) == info.frames


def test_iter_audio_names_the_manifest_line_of_a_bad_file(tmp_path: Path):
    sf.write(tmp_path / "a.wav", np.full(1600, 0.1, dtype=np.float32), 16000)
    (tmp_path / "b.wav").write_bytes(b"not audio at all")
    lines = ['{"id": "a", "audio": "a.wav"}', '{"id": "b", "audio": "b.wav"}']
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    audio = iter_audio(Manifest.from_jsonl(tmp_path / "manifest.jsonl"))
    assert next(audio)[0].id == "a"  # lazily: the first file is read before the second fails
    with pytest.raises(InputError) as err:
        next(audio)
    assert str(err.value).startswith(f"{tmp_path / 'manifest.jsonl'}:2: {tmp_path / 'b.wav'}: ")
