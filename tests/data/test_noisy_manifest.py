"""benchmarks/noisy_manifest.py: a seeded noisy copy of a manifest, sentences optionally joined."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from weightwise.audio.io import SAMPLE_RATE
from weightwise.data import iter_audio, load_manifest


def test_joined_pairs_keep_every_sentence_in_order_with_a_pause_between(benchmark_script, samples, tmp_path):
    """Three utterances joined by 2: one pair (both texts, both signals, a silent gap between) and
    the odd one out alone; the copy is reproducible (same seed, same samples) and refuses --join 0."""
    script = benchmark_script("noisy_manifest")
    source = samples.head(3)
    noisy = script.noisy_copy(source, "white", 30.0, tmp_path / "a", join=2)
    assert len(noisy) == 2 and len(load_manifest(tmp_path / "a" / "manifest.jsonl")) == 2
    (u1, a1), (u2, a2), (u3, _) = list(iter_audio(source))
    pair = noisy.utterances[0]
    assert pair.id == f"{u1.id}+{u2.id}" and pair.text == f"{u1.text} {u2.text}"
    gap = int(script.JOIN_GAP_S * SAMPLE_RATE)
    mixed, rate = sf.read(pair.audio_path, dtype="float32")
    assert rate == SAMPLE_RATE and len(mixed) == len(a1) + gap + len(a2)
    # the gap holds only the noise (30 dB below the speech), far quieter than the speech around it
    gap_rms = np.sqrt(np.mean(mixed[len(a1) : len(a1) + gap] ** 2))
    assert gap_rms < 0.2 * np.sqrt(np.mean(mixed**2))
    assert noisy.utterances[1].id == u3.id and noisy.utterances[1].text == u3.text
    again = script.noisy_copy(source, "white", 30.0, tmp_path / "b", join=2)
    assert np.array_equal(sf.read(again.utterances[0].audio_path)[0], sf.read(pair.audio_path)[0])
    assert (
        script.main(
            [
                "--data",
                str(tmp_path / "a" / "manifest.jsonl"),
                "--snr-db",
                "10",
                "--join",
                "0",
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 2
    )
