"""Four short real utterances shipped inside the package, so smoke tests and `--help` examples
work on a machine that has no dataset (and no `shared/data`).

The audio lives in the `samples/` folder next to this module (package data, not a Python
package); see `samples/README.md` for sources and licenses (LibriSpeech CC BY 4.0, CMU ARCTIC
prompts read by "Kathleen", CC0 1.0).
"""

from __future__ import annotations

from pathlib import Path

from weightwise.data.manifest import Manifest

__all__ = ["SAMPLES_DIR", "sample_manifest"]

SAMPLES_DIR: Path = Path(__file__).resolve().parent / "samples"


def sample_manifest() -> Manifest:
    """The bundled samples as a Manifest (2 LibriSpeech test-clean + 2 ARCTIC utterances)."""
    return Manifest.from_jsonl(SAMPLES_DIR / "manifest.jsonl")
