"""`export_onnx`: a model (and its plan) as an encoder + cached decoder that ONNX Runtime runs.

    export_onnx("whisper-tiny.en", "out/tiny-int4", plan="benchmarks/plans/int4-group64.json")
    model = load_onnx_export("out/tiny-int4")        # weightwise.models.onnx_engine
    transcribe(model, samples).text                  # our features, search and guard

The folder is written beside its final place and renamed into it, so a killed export never leaves
a half folder under that name. Its manifest (`weightwise.models.onnx_engine.MANIFEST_NAME`) is
what `eval --engine onnxruntime --model DIR` reads.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weightwise.compress.loading import load_model_with_plan
from weightwise.errors import InputError
from weightwise.models.onnx_engine import FORMAT, FORMAT_VERSION, MANIFEST_NAME, is_onnx_export
from weightwise.models.registry import file_sha256
from weightwise.models.whisper import WhisperASR

FORMATS = ("onnx",)


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    files_nbytes: dict[str, int]  # file name -> size on disk
    tensors: dict[str, dict[str, str]]  # module name -> precision kept and the ONNX op that runs it


def check_export_out(out_dir: str | os.PathLike) -> Path:
    """`out_dir` as an absolute path if an export may go there: a new or empty folder, or an
    earlier export (replaced). Cheap: call it before the model load."""
    out = Path(os.path.abspath(Path(out_dir).expanduser()))
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise InputError(f"--out {out_dir}: exists and is not a folder; name a new folder")
    if out.is_dir() and any(out.iterdir()) and not is_onnx_export(out):
        raise InputError(f"--out {out_dir}: a folder holding other files; name a new or empty folder")
    if out == Path.cwd().resolve() or out in Path.cwd().resolve().parents:
        raise InputError(f"--out {out_dir}: is the current folder or one above it; name a new folder")
    return out


def _tokens(model: WhisperASR) -> dict[str, Any]:
    t = model.tokens
    return {
        "eot": t.eot,
        "sot": t.sot,
        "no_timestamps": t.no_timestamps,
        "prompt": list(t.prompt),
        "suppress": list(t.suppress),
        "suppress_begin": list(t.suppress_begin),
        "english_only": t.english_only,
    }


def _config(model: WhisperASR) -> dict[str, Any]:
    c = model.network.config
    return {
        "n_mels": c.num_mel_bins,
        "vocab_size": c.vocab_size,
        "d_model": c.d_model,
        "encoder_layers": c.encoder_layers,
        "decoder_layers": c.decoder_layers,
        "encoder_heads": c.encoder_attention_heads,
        "decoder_heads": c.decoder_attention_heads,
        "max_source_positions": c.max_source_positions,
        "max_target_positions": c.max_target_positions,
        "sample_rate_hz": model.sample_rate,
        "features": "weightwise.decode.features.log_mel_spectrogram (faster-whisper padding), 3000-frame windows",
    }


def _tokenizer_file(model: WhisperASR) -> Path:
    """The tokenizer.json the model was built from (its source folder, or the bundled twin's)."""
    from weightwise.models.registry import bundled_side_files

    source = Path(model.info.source)
    for folder in (source if source.is_dir() else source.parent, bundled_side_files(model.network.config.vocab_size)):
        if folder is not None and (folder / "tokenizer.json").is_file():
            return folder / "tokenizer.json"
    raise InputError(f"{model.info.name}: no tokenizer.json beside {source} to put in the export")


def export_onnx(
    model_name: str,
    out_dir: str | os.PathLike,
    plan: str | os.PathLike | None = None,
    calib: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> ExportResult:
    """Write `model_name` (compressed by `plan`, calibrated on `calib` for GPTQ / csp rules) to
    `out_dir`: encoder.onnx, decoder.onnx, tokenizer.json and the manifest.

    Raises:
        InputError: a bad `out_dir`, model, plan or calibration manifest (as for `compress`), or a
            model that is not a Whisper (transducers have no ONNX export).
    """
    out = check_export_out(out_dir)
    try:  # an optional dependency: the rest of weightwise imports without it
        import onnx

        from weightwise.export.graph import OPSET, build_decoder, build_encoder
    except ImportError:
        raise InputError("--format onnx needs the onnx package (pip install 'weightwise[onnx]')") from None
    model = load_model_with_plan(model_name, "fp32", cache_dir, plan=plan, calib=calib if plan else None, pack=False)
    if not isinstance(model, WhisperASR):
        raise InputError(f"--model {model_name}: only Whisper models export to ONNX")
    runtime = model.runtime.to_dict() if model.runtime else None
    encoder, enc_tensors = build_encoder(model.network)
    decoder, dec_tensors = build_decoder(model.network)
    staging = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.tmp"
    staging.mkdir(parents=True)
    try:
        onnx.save_model(encoder, staging / "encoder.onnx")
        onnx.save_model(decoder, staging / "decoder.onnx")
        tokenizer = _tokenizer_file(model)
        shutil.copyfile(tokenizer, staging / "tokenizer.json")
        names = ("encoder.onnx", "decoder.onnx", "tokenizer.json")
        tensors = {**enc_tensors, **dec_tensors}
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "source": {
                "model": model.info.name,
                "model_source": model.info.source,
                "weights_sha256": model.info.weights_sha256,
                "n_params": model.info.n_params,
                "plan": model.info.plan,
                "plan_runtime_not_applied": runtime,  # kv/activation rounding is simulated in torch only
            },
            "opset": OPSET,
            "tokenizer": {"file": "tokenizer.json", "copied_from": str(tokenizer)},
            "config": _config(model),
            "tokens": _tokens(model),
            "tensors": tensors,
            "files": {name: file_sha256(staging / name) for name in names},
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)  # an earlier export (check_export_out refused anything else)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    sizes = {name: (out / name).stat().st_size for name in names}
    return ExportResult(out, sizes, tensors)
