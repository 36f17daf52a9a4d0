"""weightwise.data.samples: the bundled set is real, small, licensed, and matches shared data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from weightwise.audio import SAMPLE_RATE, load_audio
from weightwise.data import SAMPLES_DIR, sample_manifest

EXPECTED_TEXT = {
    "1089-134691-0000": "HE COULD WAIT NO LONGER",
    "1089-134686-0001": "STUFF IT INTO YOU HIS BELLY COUNSELLED HIM",
    "arctic_a0287_1592710495": "Keep an eye on him.",
    "arctic_a0240_1592711567": "Wash your hands of me.",
}


def test_manifest_contents():
    manifest = sample_manifest()
    assert {u.id: u.text for u in manifest} == EXPECTED_TEXT
    assert manifest.has_text
    assert manifest.total_duration_s == pytest.approx(2.085 + 3.275 + 1.16 + 1.294)
    assert {u.speaker for u in manifest} == {"1089", "kathleen"}
    for utt in manifest:
        assert utt.audio_path.parent == SAMPLES_DIR
        assert utt.extra["license"].startswith(("CC BY 4.0", "CC0 1.0"))
        assert "@" in utt.extra["source"]  # repo@commit path


def test_audio_decodes_to_the_stated_duration():
    for utt in sample_manifest():
        samples = load_audio(utt.audio_path)
        assert samples.dtype == np.float32 and samples.ndim == 1
        # Manifest durations are rounded to the millisecond: allow 0.5 ms = 8 samples.
        assert abs(len(samples) / SAMPLE_RATE - utt.duration_s) <= 0.0005 + 1e-9
        assert np.sqrt(np.mean(samples**2)) > 0.01  # speech, not silence


def test_small_and_documented():
    total_bytes = sum(path.stat().st_size for path in SAMPLES_DIR.iterdir())
    assert total_bytes < 1_000_000
    readme = (SAMPLES_DIR / "README.md").read_text()
    for needle in [
        "bf5854c5995270f29bcc625a31e0b39e545a015d",
        "c51cb971036a127359b43c621f26ca5081eab13e",
        "CC BY 4.0",
        "CC0 1.0",
        "Vassil Panayotov",
        *EXPECTED_TEXT,
    ]:
        assert needle in readme
    flac_names = sorted(p.name for p in SAMPLES_DIR.glob("*.flac"))
    assert flac_names == sorted(f"{utt_id}.flac" for utt_id in EXPECTED_TEXT)


def _shared_record(shared_data_dir: Path, set_name: str, utt_id: str) -> dict:
    lines = (shared_data_dir / set_name / "manifest.jsonl").read_text().splitlines()
    return next(record for record in map(json.loads, lines) if record["id"] == utt_id)


def test_bytes_and_fields_identical_to_shared_data(shared_data_dir: Path):
    for line in (SAMPLES_DIR / "manifest.jsonl").read_text().splitlines():
        record = json.loads(line)
        shared = _shared_record(shared_data_dir, record["shared_set"], record["id"])
        original = shared_data_dir / record["shared_set"] / shared["audio"]
        assert (SAMPLES_DIR / record["audio"]).read_bytes() == original.read_bytes()
        kept = {k: v for k, v in record.items() if k not in ("audio", "shared_set")}
        assert kept == {k: v for k, v in shared.items() if k != "audio"}
