"""What to transcribe: immutable manifests, a LibriSpeech-folder reader, bundled samples, the
audio of a manifest (`iter_audio`), and noise sources by name or path (`resolve_noise`)."""

from __future__ import annotations

from weightwise.data.librispeech import read_librispeech_dir
from weightwise.data.manifest import Manifest, Utterance, iter_audio
from weightwise.data.noise import resolve_noise
from weightwise.data.samples import SAMPLES_DIR, sample_manifest
from weightwise.data.sources import SAMPLES, load_manifest, open_manifest

__all__ = [
    "SAMPLES",
    "SAMPLES_DIR",
    "Manifest",
    "Utterance",
    "iter_audio",
    "load_manifest",
    "open_manifest",
    "read_librispeech_dir",
    "resolve_noise",
    "sample_manifest",
]
