"""Read audio files into the one shape every model here wants: mono float32 at 16 kHz.

Decoding goes through `soundfile` (libsndfile: WAV, FLAC, OGG/Vorbis, MP3 and the rest of its
formats) and resampling through `soxr` at "HQ" quality, so no ffmpeg binary is needed.

Every problem a user can cause with a file (missing, a folder, 0 bytes, not audio, no samples,
NaN/inf samples, samples far beyond full scale) becomes an `InputError` whose one line names the
file, because the CLI turns those into exit status 2 instead of a numpy or libsndfile traceback.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from weightwise.errors import InputError

SAMPLE_RATE = 16000  # Hz; Whisper's input rate
# Largest accepted |sample|. Full scale is 1.0 (libsndfile maps integer PCM into [-1, 1)); float
# files may overshoot it, so 24 dB of headroom (16x) is allowed. Beyond that the file is mis-scaled
# (e.g. int16 values stored as float, up to 32768) or junk (1e30): Whisper's log-mel features
# depend on the absolute level, and on a bundled sample tiny.en's transcript was right at 32x and
# wrong at 1000x (log-mel overflows float32 near 1e17), so such audio is an error, not text.
MAX_ABS_SAMPLE = 16.0

__all__ = ["SAMPLE_RATE", "audio_duration_s", "load_audio", "to_mono_16k"]


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Load an audio file as contiguous mono float32 samples at `sample_rate`.

    Channels are averaged (not just the first one taken) so a stereo file whose speech sits in
    one channel still keeps it. The rate is converted only when it differs, so 16 kHz files keep
    their exact samples.

    Args:
        path: a file libsndfile can decode (WAV, FLAC, OGG, MP3, ...).
        sample_rate: output rate in Hz.

    Returns:
        1-D float32 array, nominally in [-1, 1].

    Raises:
        InputError: the file is missing, a folder, empty, not decodable, has no samples, or has
            non-finite samples or samples beyond +-MAX_ABS_SAMPLE. The message names the file.
    """
    file = _checked_file(path)
    try:
        with _native_stderr_hidden():
            samples, file_rate_hz = sf.read(file, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as err:
        raise InputError(f"{file}: not a readable audio file ({_reason(err)})") from None
    if samples.shape[0] == 0:
        raise InputError(f"{file}: audio has zero length (0 frames)")
    _check_values(samples, f"{file}: audio")
    return _mono_resampled(samples, file_rate_hz, sample_rate)


def audio_duration_s(path: str | os.PathLike) -> float:
    """Duration of an audio file in seconds, from its header (no decoding).

    Raises:
        InputError: same cases as `load_audio`, except non-finite samples (not looked at).
    """
    file = _checked_file(path)
    try:
        with _native_stderr_hidden():
            info = sf.info(file)
    except (sf.SoundFileError, RuntimeError) as err:
        raise InputError(f"{file}: not a readable audio file ({_reason(err)})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise InputError(f"{file}: audio has zero length (0 frames)")
    return info.frames / info.samplerate


def to_mono_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Turn an in-memory signal into contiguous mono float32 at `SAMPLE_RATE` (16 kHz).

    Args:
        samples: 1-D (frames,) or 2-D (frames, channels) array, the layout soundfile returns.
            Float input is taken as-is; integer PCM is scaled to [-1, 1) by its type's range.
        sample_rate: rate of `samples` in Hz.

    Raises:
        InputError: wrong shape, empty, non-numeric, non-finite or beyond +-MAX_ABS_SAMPLE, or a
            non-positive rate.
    """
    array = np.asarray(samples)
    if array.ndim not in (1, 2):
        raise InputError(f"audio array must be 1-D or 2-D (frames, channels), got shape {array.shape}")
    if array.size == 0:
        raise InputError("audio array is empty")
    array = _as_float32(array)
    _check_values(array, "audio array")
    return _mono_resampled(array, sample_rate, SAMPLE_RATE)


def _check_values(samples: np.ndarray, what: str) -> None:
    """Reject NaN/inf samples and samples beyond `MAX_ABS_SAMPLE` (mis-scaled or junk audio)."""
    if not np.isfinite(samples).all():
        raise InputError(f"{what} contains non-finite samples (NaN or inf)")
    peak = float(np.abs(samples).max())
    if peak > MAX_ABS_SAMPLE:
        raise InputError(
            f"{what} has samples up to {peak:.3g}, beyond the accepted +-{MAX_ABS_SAMPLE:g} "
            "(full scale is 1); rescale it (integer PCM stored as float?)"
        )


def _mono_resampled(samples: np.ndarray, rate_hz: int, target_hz: int) -> np.ndarray:
    """Average channels, resample with soxr HQ if the rates differ, return contiguous float32."""
    for name, value in (("sample rate", rate_hz), ("target sample rate", target_hz)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise InputError(f"{name} must be a positive integer in Hz, got {value!r}")
    mono = samples.mean(axis=1, dtype=np.float32) if samples.ndim == 2 else samples
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if rate_hz != target_hz:
        mono = soxr.resample(mono, int(rate_hz), int(target_hz), quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def _as_float32(array: np.ndarray) -> np.ndarray:
    """Float arrays cast to float32; integer PCM scaled so full scale maps to [-1, 1)."""
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    if np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_:
        info = np.iinfo(array.dtype)
        if info.min == 0:  # unsigned PCM (e.g. 8-bit WAV) is centred on its midpoint
            return (array.astype(np.float32) - (info.max + 1) / 2) / ((info.max + 1) / 2)
        return array.astype(np.float32) / float(-info.min)
    raise InputError(f"audio array must hold numbers, got dtype {array.dtype}")


def _checked_file(path: str | os.PathLike) -> Path:
    """Catch the path problems libsndfile would report only as a vague 'Error opening'."""
    file = Path(path)
    if not file.exists():
        raise InputError(f"{file}: audio file not found")
    if file.is_dir():
        raise InputError(f"{file}: is a directory, not an audio file")
    if file.stat().st_size == 0:
        raise InputError(f"{file}: empty file (0 bytes), not a readable audio file")
    return file


@contextlib.contextmanager
def _native_stderr_hidden() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block. libsndfile's MP3 decoder (mpg123) prints
    "Note: Illegal Audio-MPEG-Header ..." lines straight to fd 2 on data that is not MP3 (or an
    MP3 it has to resync), which would break the one-line error a bad file gets."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to hide
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _reason(err: Exception) -> str:
    """libsndfile's own short reason ('Format not recognised'), without its path prefix."""
    reason = str(getattr(err, "error_string", "") or "").strip().rstrip(".")
    if not reason:
        code = getattr(err, "code", None)
        reason = f"libsndfile error {code}" if code is not None else type(err).__name__
    return reason
