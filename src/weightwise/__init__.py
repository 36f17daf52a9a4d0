"""weightwise: where an on-device speech recognizer's energy goes, per weight tensor, and how to cut it.

The pipeline, one verb per step::

    manifest = load_manifest("manifest.jsonl")        # or sample_manifest()
    model = load_model("whisper-tiny.en", precision="fp32")
    text = transcribe(model, load_audio("clip.flac")).text
    result = evaluate(model, manifest)                # WER, RTF, peak RSS (MiB), per-utterance ref/hyp
    energy = profile(model, manifest, load_device("jetson-orin-nano"))   # per-tensor modeled energy
    compress_(model, Plan.from_json("plan.json"))     # in place; or load_model_with_plan(name, plan=...)
    run_bench(BenchConfig(models=("whisper-tiny.en",), data="samples"), "bench.jsonl")
    write_report("bench.jsonl", "report.html")
    optimize("whisper-tiny.en", "jetson-orin-nano", 0.5, calib, eval_set, "out/")  # plan under a WER budget

Every name below is imported from its module on first use, so `import weightwise` costs little
more than torch; the command line (`weightwise.cli`) uses only these names. Importing the package
imports `weightwise.compress` (and so torch, ~1.3 s), which registers the loader for folders
written by `weightwise compress`, so `load_model(DIR)` works from any entry point; transformers
loads on first use of a model.
"""

from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    # audio and data
    "SAMPLE_RATE": "weightwise.audio",
    "load_audio": "weightwise.audio",
    "Manifest": "weightwise.data",
    "Utterance": "weightwise.data",
    "iter_audio": "weightwise.data",
    "load_manifest": "weightwise.data",
    "open_manifest": "weightwise.data",
    "sample_manifest": "weightwise.data",
    "resolve_noise": "weightwise.data",
    # models and decoding
    "PRECISIONS": "weightwise.models",
    "available_models": "weightwise.models",
    "load_model": "weightwise.models",
    "DecodingOptions": "weightwise.decode",
    "TransducerConfig": "weightwise.models.transducer",
    "transcribe": "weightwise.decode",
    # evaluation
    "PEERS": "weightwise.evaluate",
    "DEFAULT_COMPUTE_TYPE": "weightwise.evaluate.peer",
    "check_peer": "weightwise.evaluate.peer",
    "evaluate": "weightwise.evaluate",
    "run_faster_whisper": "weightwise.evaluate",
    "set_threads": "weightwise.evaluate.runtime",
    # profiling
    "KV_BYTES_PER_VALUE": "weightwise.profile.traffic",
    "check_act_dtype": "weightwise.profile.traffic",
    "available_devices": "weightwise.profile",
    "get_meter": "weightwise.profile",
    "load_device": "weightwise.profile",
    "profile": "weightwise.profile",
    # compression
    "Plan": "weightwise.compress",
    "compress_": "weightwise.compress",
    "save_compressed": "weightwise.compress",
    "load_compressed": "weightwise.compress",
    "check_compressed_out": "weightwise.compress",
    "unique_storage": "weightwise.compress",
    "load_model_with_plan": "weightwise.compress.loading",
    # export for edge runtimes, and running an export through our harness
    "FORMATS": "weightwise.export",
    "check_export_out": "weightwise.export",
    "export_onnx": "weightwise.export",
    "ENGINES": "weightwise.models.onnx_engine",
    "load_onnx_export": "weightwise.models.onnx_engine",
    # streaming
    "create_stream": "weightwise.stream",
    "StreamOptions": "weightwise.stream",
    "StreamResult": "weightwise.stream",
    "Word": "weightwise.stream",
    "evaluate_stream": "weightwise.stream.evaluate",
    "make_paused_audio": "weightwise.stream.pauses",
    "file_chunks": "weightwise.stream.live",
    "mic_chunks": "weightwise.stream.live",
    "run_stream": "weightwise.stream.live",
    # benchmark matrix and reports
    "BenchConfig": "weightwise.bench",
    "BenchRow": "weightwise.bench",
    "run_bench": "weightwise.bench",
    "write_report": "weightwise.report.bench_report",
    "print_eval": "weightwise.report.tables",
    "print_profile": "weightwise.report.tables",
    "plot_profile": "weightwise.report.plots",
    # training our own models (the streaming transducer family)
    "DigitStrings": "weightwise.train",
    "TrainConfig": "weightwise.train",
    "train_transducer": "weightwise.train",
    # result files and errors
    "check_output_path": "weightwise.outputs",
    "write_json_atomic": "weightwise.outputs",
    # where bench cells and sensitivity candidates run (this process or a Ray cluster)
    "ExecutorConfig": "weightwise.executors",
    "open_executor": "weightwise.executors",
    # the headline: a plan under a WER budget, end to end
    "optimize": "weightwise.optimize",
    "OptimizeOptions": "weightwise.optimize",
    "CandidateSpace": "weightwise.compress.candidates",
    "RuntimeSettings": "weightwise.models.runtime",
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
import weightwise.stream  # noqa: E402,F401  (registers `WhisperASR.create_stream`)

# `evaluate`, `profile` and `optimize` name both a function of the API and a subpackage, and importing a
# subpackage binds its name on this package (which `__getattr__` then never sees). The import above
# has loaded both subpackages, so binding the functions now makes `from weightwise import evaluate`
# the function for good. Import from the subpackages with `from weightwise.evaluate.x import y`.
from weightwise.evaluate import evaluate  # noqa: E402,F401  (exported: in __all__)
from weightwise.optimize import optimize  # noqa: E402,F401  (exported: in __all__)
from weightwise.profile import profile  # noqa: E402,F401  (exported: in __all__)
