"""What to transcribe: immutable manifests, a LibriSpeech-folder reader, bundled samples."""

from __future__ import annotations

from weightwise.data.librispeech import read_librispeech_dir
from weightwise.data.manifest import Manifest, Utterance, load_manifest
from weightwise.data.samples import SAMPLES_DIR, sample_manifest

__all__ = [
    "SAMPLES_DIR",
    "Manifest",
    "Utterance",
    "load_manifest",
    "read_librispeech_dir",
    "sample_manifest",
]
