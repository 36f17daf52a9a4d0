"""weightwise: where an on-device speech recognizer's energy goes, per weight tensor, and how to cut it.

The pipeline, one verb per step::

    manifest = load_manifest("manifest.jsonl")        # or sample_manifest()
    model = load_model("whisper-tiny.en", precision="fp32")
    text = transcribe(model, load_audio("clip.flac")).text
    result = evaluate(model, manifest)                # WER, RTF, peak RSS, per-utterance ref/hyp
    optimize("whisper-tiny.en", "jetson-orin-nano", 0.5, calib, eval_set, "out/")  # plan under a WER budget

Importing the package imports `weightwise.compress` (and so torch, ~1.3 s), which registers the
loader for folders written by `weightwise compress`, so `load_model(DIR)` works from any entry
point; transformers loads on first use of a model.
"""

from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    "load_audio": "weightwise.audio",
    "Manifest": "weightwise.data", "Utterance": "weightwise.data",
    "load_manifest": "weightwise.data", "sample_manifest": "weightwise.data",
    "load_model": "weightwise.models", "available_models": "weightwise.models",
    "DecodingOptions": "weightwise.decode", "transcribe": "weightwise.decode",
    "evaluate": "weightwise.evaluate", "run_faster_whisper": "weightwise.evaluate",
    "optimize": "weightwise.optimize", "OptimizeOptions": "weightwise.optimize",
    "InputError": "weightwise.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'weightwise' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)


# Last, so that the names above exist while it runs: every import of a weightwise module runs
# this file first, so the compressed-folder loader is registered before any `load_model` call.
import weightwise.compress  # noqa: E402,F401
