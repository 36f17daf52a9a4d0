"""weightwise.decode.features: log-mel frames and 30 s windows (faster-whisper's convention)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weightwise.decode.features import N_FRAMES, log_mel_spectrogram, split_windows


def _real_audio(sample_audio, n_samples: int) -> np.ndarray:
    """`n_samples` of real speech: the bundled utterances back to back, repeated as needed."""
    speech = np.concatenate([audio for _, audio in sample_audio])
    reps = -(-n_samples // len(speech))
    return np.tile(speech, reps)[:n_samples]


@pytest.mark.parametrize("n_samples", [160, 161, 16000, 33_397, 479_999, 480_000, 480_160])
def test_frame_count_is_samples_over_hop(sample_audio, n_samples):
    mel = log_mel_spectrogram(_real_audio(sample_audio, n_samples))
    assert mel.shape == (80, n_samples // 160)
    assert mel.dtype == torch.float32


def test_matches_faster_whisper_feature_extractor(sample_audio):
    """Same numbers as faster-whisper's own numpy implementation (our peer's convention)."""
    from faster_whisper.feature_extractor import FeatureExtractor

    extractor = FeatureExtractor(feature_size=80)
    for _, audio in sample_audio[:2]:
        theirs = extractor(audio)[..., :-1]  # faster-whisper drops the padding frame the same way
        ours = log_mel_spectrogram(audio).numpy()
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).max() < 1e-4


def test_dynamic_range_is_clamped_to_8_decades(sample_audio):
    mel = log_mel_spectrogram(sample_audio[0][1])
    # (log10 + 4) / 4 with values floored at max - 8: the spread is at most 2
    assert float(mel.max() - mel.min()) <= 2.0 + 1e-6
    assert float(mel.max() - mel.min()) == pytest.approx(2.0, abs=1e-6)  # real speech reaches the floor


def test_windows_of_65_seconds(sample_audio):
    mel = log_mel_spectrogram(_real_audio(sample_audio, 65 * 16000))
    assert mel.shape[-1] == 6500
    windows = split_windows(mel)
    assert len(windows) == 3
    assert [w.index for w in windows] == [0, 1, 2]
    assert [w.start_frame for w in windows] == [0, 3000, 6000]
    assert [w.n_frames for w in windows] == [3000, 3000, 500]
    assert [w.start_s for w in windows] == pytest.approx([0.0, 30.0, 60.0])
    assert [w.duration_s for w in windows] == pytest.approx([30.0, 30.0, 5.0])
    for w in windows:
        assert w.features.shape == (80, N_FRAMES) == (80, 3000)
        assert torch.equal(w.features[:, : w.n_frames], mel[:, w.start_frame : w.start_frame + w.n_frames])
    last = windows[-1].features
    assert not last[:, 500:].any()  # zero padding in the feature domain beyond the content
    assert last[:, :500].abs().sum() > 0


@pytest.mark.parametrize("seconds, expected", [(1, [100]), (30, [3000]), (30.01, [3000, 1]), (60, [3000, 3000])])
def test_window_boundaries(sample_audio, seconds, expected):
    mel = log_mel_spectrogram(_real_audio(sample_audio, round(seconds * 16000)))
    windows = split_windows(mel)
    assert [w.n_frames for w in windows] == expected
    pad = windows[-1].features[:, expected[-1] :]
    assert pad.shape[-1] == 3000 - expected[-1] and not pad.any()


def test_no_frames_still_gives_one_empty_window():
    windows = split_windows(torch.zeros(80, 0))
    assert len(windows) == 1
    assert windows[0].n_frames == 0 and windows[0].features.shape == (80, 3000)
    assert not windows[0].features.any()
