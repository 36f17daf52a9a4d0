"""`weightwise` command line: a thin shell over the Python API, one subcommand per verb.

Bad input (files, manifests, model names, options) prints one line and exits with status 2.
It imports only the top-level `weightwise` API (inside each command, so `--help` stays fast).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from weightwise import InputError

DEFAULT_MODEL = "whisper-tiny.en"


def _progress(total: int):
    """A rich progress bar wrapper `(iterable, label) -> iterable` on stderr."""
    from rich.console import Console
    from rich.progress import track

    console = Console(stderr=True)

    def wrap(items: Iterable, label: str) -> Iterable:
        if not console.is_terminal:  # logs and pipes get no bar (and errors stay one line)
            return items
        # transient: the bar is erased when done or interrupted, so an error stays one line
        return track(items, description=label, total=total, console=console, transient=True)

    return wrap


class _Parser(argparse.ArgumentParser):
    """argparse held to the CLI's error contract: a bad option prints one line, "weightwise: error:
    ...", and exits 2 (argparse's own error() prints the usage block first). --help is unchanged."""

    def error(self, message: str):
        command = self.prog.removeprefix("weightwise").strip()
        see = f"weightwise {command} --help" if command else "weightwise --help"
        self.exit(InputError.exit_code, f"weightwise: error: {' '.join(message.split())} (see {see})\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _model_args(parser: argparse.ArgumentParser) -> None:
    from weightwise import PRECISIONS

    # fmt: off
    parser.add_argument("--model", default=DEFAULT_MODEL, help="registered name, checkpoint path or hub id")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument("--beam-size", type=_positive_int, default=1, help="1 = greedy")
    parser.add_argument("--threads", type=_positive_int, default=None, help="torch intra-op threads")
    parser.add_argument("--cache-dir", default=None, help="where converted weights are cached")
    # fmt: on


def _executor_args(parser: argparse.ArgumentParser, what: str) -> None:
    # fmt: off
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help=f"where {what} run: here, one after the other (default), or as Ray tasks "
                        "(needs pip install 'weightwise[ray]')")
    parser.add_argument("--ray-address", default=None, metavar="ADDR",
                        help="join this Ray cluster (e.g. HOST:6379 or 'auto'); default: start a local one")
    # fmt: on


def _executor(args):
    from weightwise import ExecutorConfig

    return ExecutorConfig(args.executor, args.ray_address, args.threads)


def _decode_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-new-tokens",
        type=_positive_int,
        default=None,
        help="token limit per 30 s window (default: all the decoder holds, 446 for Whisper)",
    )
    parser.add_argument(
        "--no-repetition-guard",
        action="store_true",
        help="decode looping windows to eot or the limit (default: stop a window that repeats itself)",
    )


def _options(args, **overrides):
    """DecodingOptions from --beam-size, --max-new-tokens and --no-repetition-guard."""
    from weightwise import DecodingOptions

    options = DecodingOptions(beam_size=args.beam_size, max_new_tokens=args.max_new_tokens, **overrides)
    return options.without_guard() if args.no_repetition_guard else options


def _inputs(args, *manifests) -> list[Path]:
    """Files this command reads (option values that are files, manifests and their audio): an
    output path may not be one of them."""
    named = [getattr(args, name, None) for name in ("plan", "calib", "finetune", "device", "data")]
    paths = [Path(p) for p in named if p and Path(p).is_file()]
    for manifest in manifests:
        paths += [Path(manifest.source)] if Path(manifest.source).is_file() else []
        paths += [utt.audio_path for utt in manifest]
    return paths


def _plan_args(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--plan", required=required, default=None, help="compression plan JSON")
    parser.add_argument(
        "--calib",
        default=None,
        help="calibration audio manifest (no transcripts needed), for csp pruning and gptq plans",
    )
    parser.add_argument(
        "--finetune",
        default=None,
        metavar="MANIFEST",
        help="transcribed training audio: csp rules fine-tune on it (see --finetune-steps)",
    )
    parser.add_argument(
        "--finetune-steps",
        type=_positive_int,
        default=0,
        help="fine-tuning steps, one utterance each (default 0: post-training csp)",
    )
    parser.add_argument("--finetune-lr", type=float, default=1e-5, help="Adam learning rate for --finetune")


def _engine_args(parser: argparse.ArgumentParser) -> None:
    from weightwise import ENGINES

    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="torch",
        help="what runs the network: torch (default) or onnxruntime, which runs the folder that "
        "`weightwise export --format onnx` wrote, given as --model DIR (features, search and scoring stay ours)",
    )


def _load(args, pack: bool = True):
    """The model, compressed on the fly when --plan is given (calibrating on --calib, fine-tuning
    csp rules on --finetune for --finetune-steps); quantized layers packed unless `pack` is False.
    With --engine onnxruntime, --model names an export folder, opened on ONNX Runtime."""
    from weightwise import load_model_with_plan, load_onnx_export, set_threads

    set_threads(args.threads)
    plan = getattr(args, "plan", None)
    if getattr(args, "engine", "torch") == "onnxruntime":
        if plan or args.precision != "fp32":
            raise InputError("--engine onnxruntime: the export holds its plan and precisions; drop --plan/--precision")
        return load_onnx_export(args.model, args.threads)
    if Path(args.model, "weightwise-export.json").is_file():
        raise InputError(f"--model {args.model}: an ONNX export folder; run it with --engine onnxruntime")
    return load_model_with_plan(
        args.model,
        args.precision,
        args.cache_dir,
        plan=plan,
        calib=args.calib if plan else None,
        train=args.finetune if plan else None,
        finetune_steps=args.finetune_steps if plan else 0,
        finetune_lr=args.finetune_lr if plan else 1e-5,
        pack=pack,
    )


def _manifest(data: str, limit: int | None):
    from weightwise import open_manifest

    return open_manifest(data, limit)


def cmd_transcribe(args) -> int:
    from weightwise import Manifest, check_output_path, iter_audio, transcribe, write_json_atomic

    manifest = Manifest.from_paths(args.files)
    if args.out is not None:
        check_output_path(args.out, inputs=_inputs(args, manifest))
    manifest.check_audio()  # decodes every file (truncated, NaN/inf, mis-scaled) before the model load
    model = _load(args)
    options = _options(args)
    rows = []
    for utt, samples in _progress(len(manifest))(iter_audio(manifest), "transcribing"):
        out = transcribe(model, samples, options, file_id=utt.id)
        rows.append(
            {
                "file": str(utt.audio_path),
                "text": out.text,
                "audio_s": out.audio_s,
                "n_tokens": out.n_tokens,
                "n_windows": len(out.windows),
                "stop_reasons": [w.stop_reason for w in out.windows],
            }
        )
        print(f"{utt.audio_path.name}\t{out.text}")
        _note_stops(utt.audio_path.name, out)
    if args.out is not None:
        write_json_atomic(
            args.out,
            {
                "model": model.info.name,
                "precision": model.info.precision,
                "decoding": dataclasses.asdict(options),
                "transcripts": rows,
            },
        )
    return 0


def _note_stops(name: str, out) -> None:
    """One stderr note when a transcript was cut short (looping windows, or the token limit)."""
    repeated, limited = out.n_windows_repetition_stopped, out.n_windows_limit_stopped
    if repeated or limited:
        print(
            f"weightwise: note: {name}: {repeated + limited} of {len(out.windows)} windows stopped before "
            f"end-of-text ({repeated} on repetition, {limited} at the token limit)",
            file=sys.stderr,
        )


def cmd_eval(args) -> int:
    from weightwise import check_output_path, evaluate, print_eval, run_faster_whisper

    manifest = _manifest(args.data, args.limit)
    check_output_path(args.out, inputs=_inputs(args, manifest))
    if args.peer_compute_type and not args.peer:
        raise InputError("--peer-compute-type is used only with --peer faster-whisper")
    if args.peer and args.engine != "torch":  # the peer runs a CTranslate2 folder, not an export
        raise InputError("--peer with --engine onnxruntime: compare with the peer in `bench --engine onnxruntime`")
    if args.peer:  # a compute type the CPU cannot run fails now, not after our own evaluation
        from weightwise import DEFAULT_COMPUTE_TYPE, check_peer

        compute_type = args.peer_compute_type or DEFAULT_COMPUTE_TYPE[args.precision]
        try:
            check_peer(compute_type)
        except InputError as err:
            raise InputError(f"--peer-compute-type {compute_type}: {err}") from None
    manifest.check_audio()  # a bad file fails now, not after the model load and earlier utterances
    model = _load(args)
    options = _options(args)
    result = evaluate(model, manifest, options, progress=_progress(len(manifest)))
    if args.peer:
        result = run_faster_whisper(
            result, manifest, args.peer_compute_type, options, progress=_progress(len(manifest))
        )
    result.save(args.out)
    print_eval(result)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def cmd_profile(args) -> int:
    from weightwise import check_act_dtype, check_output_path, get_meter, load_device, print_profile, profile

    device = load_device(args.device)  # validate cheap inputs before loading the model
    if args.activation_precision is not None:
        check_act_dtype(args.activation_precision)  # one line, not argparse's usage text
    manifest = _manifest(args.data, args.limit)
    check_output_path(args.out, inputs=_inputs(args, manifest))
    if args.plot is not None:
        if Path(args.plot).resolve() == Path(args.out).resolve():
            raise InputError(f"--plot {args.plot}: same path as --out; give the figure its own file")
        check_output_path(args.plot, inputs=_inputs(args, manifest), flag="--plot")
    manifest.check_audio()
    meter = get_meter(args.meter)  # an unknown meter fails before the model load
    model = _load(args)
    options = _options(args, use_cache=not args.no_kv_cache)
    with meter:  # closed (its sampler, its handles) when the profile ends
        result = profile(
            model,
            manifest,
            device,
            options,
            progress=_progress(len(manifest)),
            meter=meter,
            kv_dtype=args.kv_precision,
            act_dtype=args.activation_precision,
            fused_attention=args.fused_attention,
        )
    result.save(args.out)
    print_profile(result)
    if args.plot:
        from weightwise import plot_profile

        plot_profile(result, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def cmd_compress(args) -> int:
    from weightwise import check_compressed_out, save_compressed, unique_storage

    if getattr(args, "precision", "fp32") != "fp32":
        raise InputError(f"--precision {args.precision}: a compressed model is saved at fp32")
    inputs = (args.model, args.plan, args.calib, args.finetune)
    check_compressed_out(args.out, inputs)  # before the slow load: never delete what we did not write
    model = _load(args, pack=False)
    out = save_compressed(model, args.out, inputs)
    sizes = unique_storage(model.network)
    print(
        f"{model.info.name} + plan {model.info.plan}: {sizes['unique_params']:,} unique parameters, "
        f"{sizes['unique_bytes'] / 1e6:.2f} MB stored (dense: {sizes['params_if_dense']:,} parameters)"
    )
    print(f"wrote {out}", file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    from weightwise import check_export_out, export_onnx, set_threads

    set_threads(args.threads)
    check_export_out(args.out)  # before the slow load
    result = export_onnx(args.model, args.out, plan=args.plan, calib=args.calib, cache_dir=args.cache_dir)
    ops: dict[str, int] = {}
    for entry in result.tensors.values():
        ops[entry["onnx_op"]] = ops.get(entry["onnx_op"], 0) + 1
    sizes = ", ".join(f"{name} {nbytes / 1e6:.1f} MB" for name, nbytes in result.files_nbytes.items())
    print(f"{args.model} -> {args.format}: {sizes}; weight ops: " + ", ".join(f"{n}x {op}" for op, n in ops.items()))
    print(f"wrote {result.out_dir} (run it: weightwise eval --engine onnxruntime --model {args.out})", file=sys.stderr)
    return 0


def cmd_optimize(args) -> int:
    from weightwise import CandidateSpace, OptimizeOptions, optimize, set_threads

    set_threads(args.threads)
    signal.signal(signal.SIGTERM, _interrupt)  # a kill runs the clean-up: nothing half-written in --out
    space = CandidateSpace.from_json(args.candidates) if args.candidates else CandidateSpace()
    runtime = _runtime(args)
    options = OptimizeOptions(
        runtime=runtime,
        space=space,
        limit_calib=args.limit_calib,
        limit_eval=args.limit_eval,
        tune=args.tune,
        limit_tune=args.limit_tune,
        cache_dir=args.sensitivity_cache,
        uniform=not args.no_uniform,
        executor=_executor(args),
        rounds=args.rounds,
        confidence=args.confidence,
    )
    result = optimize(
        args.model, args.device, args.wer_budget, args.calib, args.eval, args.out, options, progress=_progress
    )
    s, base = result.summary, result.summary["baseline"]
    opt = s["optimized"]
    print(
        f"{s['model']} on {s['device']}: {base['precision']} WER {100 * base['wer']:.2f}%, "
        f"{1e3 * base['energy_j_per_audio_s']:.3f} mJ/audio-s -> optimized WER {100 * opt['wer']:.2f}% "
        f"({opt['wer_delta_points']:+.2f} pts; predicted {opt['predicted']['wer_delta_points']:+.2f}), "
        f"{1e3 * opt['energy_j_per_audio_s']:.3f} mJ/audio-s "
        f"({100 * opt['energy_cut_vs_baseline']:.1f}% below {base['precision']})"
    )
    if opt.get("dominated_by"):
        print(
            f"warning: the optimized point is dominated by {', '.join(opt['dominated_by'])} "
            "(as good or better on WER and energy); see report.html",
            file=sys.stderr,
        )
    print(
        f"wrote {result.out_dir} (plan.json, model/, summary.json, report.html) in {s['wall_s']:.0f} s", file=sys.stderr
    )
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an interrupt so that the clean-ups of Ctrl-C run.

    A subclass on purpose: CPython remembers a bare KeyboardInterrupt that passes through code run
    by an extension's PyRun_* call (pybind11's exec during an import) and then ends the process by
    SIGINT (exit -2) even after `main` caught it and returned 130; it checks the exact type only.
    """


def _encoder_context(context: str | None) -> str | int | None:
    """--encoder-context as given: 'auto', a number of positions, or None."""
    if context is None or context == "auto":
        return context
    try:
        return int(context)
    except ValueError:
        raise InputError(f"--encoder-context {context!r}: 'auto' or a number of positions") from None


def _runtime(args):
    """The plan runtime settings the optimize flags ask for (checked as a plan's would be), or None."""
    from weightwise import RuntimeSettings

    context = _encoder_context(args.encoder_context)
    fields = {
        "kv_precision": args.kv_precision,
        "activation_precision": args.activation_precision,
        "encoder_context": context,
        "fused_attention": True if args.fused_attention else None,
    }
    settings = RuntimeSettings.from_dict({k: v for k, v in fields.items() if v is not None}, "optimize flags")
    return settings or None


def _interrupt(signum, frame) -> None:
    raise Terminated


def _budget(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of WER points, got {text!r}") from None


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def cmd_bench(args) -> int:
    from weightwise import BenchConfig, open_executor, run_bench, set_threads

    set_threads(args.threads)
    try:
        snrs = tuple(float(s) for s in _csv(args.snr))
    except ValueError:
        raise InputError(f"--snr must be comma-separated numbers in dB, got {args.snr!r}") from None
    config = BenchConfig(
        models=_csv(args.model),
        data=args.data,
        precisions=_csv(args.precision),
        plans=tuple(args.plan or ()),
        noises=_csv(args.noise),
        snrs_db=snrs,
        device=args.device,
        peers=_csv(args.peers),
        limit=args.limit,
        seed=args.seed,
        calib=args.calib,
        decoding=_options(args),
        engine=args.engine,
    )
    with open_executor(_executor(args)) as executor:
        rows = run_bench(config, args.out, progress=_progress(len(config.cells())), executor=executor)
    print(f"{len(rows)} cells in {args.out}", file=sys.stderr)
    return 0


def cmd_report(args) -> int:
    from weightwise import check_output_path, write_report

    check_output_path(args.output, inputs=[args.results], flag="--output")
    out = write_report(args.results, args.output)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _print_live(result) -> None:
    """One line per update: confirmed text, then the partial text in brackets (a terminal redraws it)."""
    line = f"[{result.audio_s:6.1f}s] {result.confirmed_text}" + (f" [{result.partial}]" if result.partial else "")
    if sys.stdout.isatty():
        print("\r\x1b[K" + line[-200:], end="\n" if result.is_final else "", flush=True)
    elif result.new_words or result.is_final:
        print(line, flush=True)


def cmd_stream(args) -> int:
    from weightwise import (
        StreamOptions,
        check_output_path,
        create_stream,
        file_chunks,
        load_audio,
        mic_chunks,
        run_stream,
        write_json_atomic,
    )

    # a bad --chunk-ms or --encoder-context fails before the model load
    context = {"encoder_context": _encoder_context(args.encoder_context)} if args.encoder_context else {}
    options = StreamOptions(chunk_ms=args.chunk_ms, vad=args.vad, **context)
    sources = [bool(args.file), args.mic, bool(args.data)]
    if sum(sources) != 1:
        raise InputError("stream: give one of FILE, --mic or --data MANIFEST")
    if args.data:
        return _stream_manifest(args, options)
    if args.out:
        check_output_path(args.out, inputs=[Path(args.file)] if args.file else [])
    samples = load_audio(args.file) if args.file else None
    model = _load(args)
    stream = create_stream(model, args.chunk_ms, args.vad, options=options)
    if samples is not None:
        chunks = file_chunks(samples, stream.chunk_samples, model.sample_rate, pace=not args.no_pace)
    else:
        chunks = mic_chunks(stream.chunk_samples, model.sample_rate)
    final = run_stream(stream, chunks, _print_live)
    if args.out:
        words = [dataclasses.asdict(c) for c in stream.confirmations]
        write_json_atomic(
            args.out, {"text": final.text, "words": words, "chunk_ms": args.chunk_ms, "model": args.model}
        )
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _stream_manifest(args, options) -> int:
    from weightwise import check_output_path, evaluate_stream, load_device

    if not args.out:
        raise InputError("stream --data: --out FILE.json is required")
    device = load_device(args.device)
    manifest = _manifest(args.data, args.limit)
    check_output_path(args.out, inputs=_inputs(args, manifest))
    manifest.check_audio()
    model = _load(args)
    result = evaluate_stream(model, manifest, device, options, progress=_progress(len(manifest)))
    result.save(args.out)
    fields = ("wer", "offline_wer", "latency_median_s", "latency_p90_s", "rtf", "offline_rtf")
    print(" ".join(f"{f}={getattr(result, f):.4g}" for f in fields if getattr(result, f) is not None))
    print(
        f"energy_j_per_audio_s={result.energy_j_per_audio_s:.4g} (offline {result.offline_energy_j_per_audio_s:.4g})"
        f" on {result.device}; decodes/audio-s {result.decodes_per_audio_s:.3g}"
    )
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def cmd_train_transducer(args) -> int:
    from weightwise import DigitStrings, TrainConfig, TransducerConfig, set_threads, train_transducer

    set_threads(args.threads)
    overrides = _json_arg(args.model_config, "--model-config")
    try:
        model = TransducerConfig.from_dict({"encoder": args.encoder, **overrides}, "--model-config")
    except TypeError as err:
        raise InputError(f"--model-config: {err}") from None
    strings = DigitStrings(noise_prob=args.noise_prob if args.noise else 0.0, repeat_prob=args.repeat_prob)
    config = TrainConfig(
        data=args.data,
        out=args.out,
        model=model,
        strings=strings,
        steps=args.steps,
        batch_size=args.batch_size,
        noise=args.noise,
        seed=args.seed,
        lr=args.lr,
        warmup_steps=min(args.warmup_steps, args.steps),
        init=args.init,
        speed_perturb=args.speed_perturb,
        time_masks=args.time_masks,
    )
    summary = train_transducer(config, progress=_progress(args.steps))
    print(
        f"{summary.out}/model: {summary.n_params:,} parameters, {summary.steps} steps "
        f"(resumed at {summary.resumed_from}), final loss {summary.final_loss:.3f}"
    )
    return 0


def _json_arg(text: str | None, flag: str) -> dict:
    """A JSON object given inline or as a file path."""
    if not text:
        return {}
    raw = Path(text).read_text() if not text.lstrip().startswith("{") and Path(text).is_file() else text
    try:
        value = json.loads(raw)
    except ValueError as err:
        raise InputError(f"{flag}: not a JSON object or a JSON file ({err})") from None
    if not isinstance(value, dict):
        raise InputError(f"{flag}: must be a JSON object, got {type(value).__name__}")
    return value


def cmd_models(args) -> int:
    from weightwise import available_models

    print(json.dumps(available_models()) if args.json else "\n".join(available_models()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from weightwise import FORMATS, KV_BYTES_PER_VALUE, PEERS, PRECISIONS

    parser = _Parser(prog="weightwise", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("transcribe", help="transcribe audio files")
    p.add_argument("files", nargs="+", help="WAV/FLAC/OGG/MP3 files (any rate; downmixed to mono)")
    _model_args(p)
    _decode_args(p)
    p.add_argument("--out", default=None, help="also write the transcripts as JSON")
    _engine_args(p)
    p.set_defaults(func=cmd_transcribe)
    p = sub.add_parser("eval", help="WER/RTF of a model on a manifest, optionally beside a peer")
    _model_args(p)
    _decode_args(p)
    p.add_argument(
        "--data", required=True, help="manifest.jsonl, its folder, a LibriSpeech folder, or 'samples' (the bundled set)"
    )
    p.add_argument("--limit", type=_positive_int, default=None, help="first N utterances only")
    p.add_argument("--peer", choices=PEERS, default=None)
    p.add_argument(
        "--peer-compute-type",
        default=None,
        help="CTranslate2 compute type (default: float32 for fp32/fp16/bf16, int8 for int8)",
    )
    _plan_args(p)
    _engine_args(p)
    p.add_argument("--out", required=True, help="result JSON (written atomically)")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("profile", help="per-tensor invocations, bytes, placement and energy on a device")
    _model_args(p)
    _decode_args(p)
    p.add_argument("--device", required=True, help="bundled device profile name or a TOML file")
    p.add_argument("--data", required=True, help="manifest (as for eval) or 'samples'")
    p.add_argument("--limit", type=_positive_int, default=None, help="first N utterances only")
    p.add_argument("--no-kv-cache", action="store_true", help="recompute all positions every step")
    p.add_argument(
        "--kv-precision",
        choices=tuple(KV_BYTES_PER_VALUE),
        default=None,
        help="storage precision of the key/value cache (default: the model's activation dtype)",
    )
    p.add_argument(
        "--activation-precision",
        default=None,
        metavar="|".join(KV_BYTES_PER_VALUE),
        help="storage precision of activations and attention MACs (default: the run's dtype)",
    )
    p.add_argument(
        "--fused-attention",
        action="store_true",
        help="assume flash-style attention: score matrices stay on-chip and are not charged",
    )
    p.add_argument("--meter", default="auto", help="auto, nvml, rapl, jetson or null")
    p.add_argument("--out", required=True, help="profile JSON (written atomically)")
    p.add_argument("--plot", default=None, help="also write a PNG figure")
    _plan_args(p)
    p.set_defaults(func=cmd_profile)
    p = sub.add_parser("compress", help="apply a compression plan and save the compressed model")
    _model_args(p)
    _plan_args(p, required=True)
    p.add_argument("--out", required=True, help="output directory (load it with --model DIR)")
    p.set_defaults(func=cmd_compress)
    p = sub.add_parser("export", help="write a model (and its plan) for an edge runtime: ONNX encoder + cached decoder")
    # fmt: off
    p.add_argument("--model", default=DEFAULT_MODEL, help="registered name or checkpoint path (float32)")
    p.add_argument("--plan", default=None, help="compression plan JSON (its precisions are kept)")
    p.add_argument("--calib", default=None, help="calibration audio manifest, for gptq and csp plans")
    p.add_argument("--format", choices=FORMATS, required=True, help="onnx: encoder + cached decoder")
    p.add_argument("--out", required=True, help="output folder (new, empty, or an earlier export, replaced)")
    p.add_argument("--cache-dir", default=None, help="where converted weights are cached")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch intra-op threads (GPTQ/csp calibration)")
    # fmt: on
    p.set_defaults(func=cmd_export, finetune=None, finetune_steps=0, finetune_lr=1e-5)
    p = sub.add_parser(
        "optimize",
        help="least modeled energy on a device within a WER budget: "
        "profile -> sensitivity -> plan -> compress -> evaluate",
    )
    # fmt: off
    p.add_argument("--model", default=DEFAULT_MODEL, help="registered name or checkpoint path (float32)")
    p.add_argument("--device", required=True, help="bundled device profile name or a TOML file")
    p.add_argument("--wer-budget", type=_budget, required=True, metavar="POINTS",
                   help="allowed WER increase over fp16 in percentage points: 0.5 = +0.5 points")
    p.add_argument("--calib", required=True, help="calibration audio manifest (no transcripts needed) or 'samples'")
    p.add_argument("--eval", required=True, help="transcribed evaluation manifest the optimizer never saw")
    p.add_argument("--out", required=True, help="output folder: plan.json, model/, summary.json, report.html")
    p.add_argument("--limit-calib", type=_positive_int, default=None, help="first N calibration utterances")
    p.add_argument("--limit-eval", type=_positive_int, default=None, help="first N evaluation utterances")
    p.add_argument("--tune", default=None, metavar="MANIFEST", action="append",
                   help="transcribed tuning audio (not --eval's): the closed loop measures each plan's real WER "
                   "increase there instead of pseudo-WER on --calib; repeat to join several manifests")
    p.add_argument("--limit-tune", type=_positive_int, default=None, help="first N tuning utterances")
    p.add_argument("--candidates", default=None, help="candidate-space JSON (default: the built-in space)")
    p.add_argument("--sensitivity-cache", default=None, metavar="DIR",
                   help="where the resumable sensitivity table is kept (default: the model cache)")
    p.add_argument("--no-uniform", action="store_true", help="skip measuring the uniform baselines")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch intra-op threads (per task)")
    p.add_argument("--rounds", type=_positive_int, default=4,
                   help="plan -> measure -> refit rounds on the calibration audio (default 4)")
    p.add_argument("--confidence", type=float, default=0.9,
                   help="a plan holds the budget when its measured WER increase's one-sided upper bound at this "
                   "confidence does (paired over the closed loop's utterances; 0.5: the point value; default 0.9)")
    p.add_argument("--kv-precision", default=None, metavar="fp16|int8",
                   help="plan runtime: key/value-cache precision, simulated in the decode (priced as one group)")
    p.add_argument("--activation-precision", default=None, metavar="fp16|int8",
                   help="plan runtime: activation precision, simulated in the decode (priced as one group)")
    p.add_argument("--encoder-context", default=None, metavar="auto|N",
                   help="plan runtime: encoder positions per window ('auto': the audio + a margin; default 1500)")
    p.add_argument("--fused-attention", action="store_true",
                   help="plan runtime and every baseline: attention scores stay on-chip (not charged)")
    # fmt: on
    _executor_args(p, "the sensitivity candidates")
    p.set_defaults(func=cmd_optimize)
    p = sub.add_parser("bench", help="models x precisions/plans x noise x SNR matrix, resumable JSONL")
    # fmt: off
    p.add_argument("--model", default=DEFAULT_MODEL, help="comma-separated model names")
    p.add_argument("--precision", default="fp32", help="comma-separated: fp32,fp16,bf16,int8")
    p.add_argument("--plan", action="append", help="compression plan JSON (repeatable; run at fp32)")
    p.add_argument("--calib", default=None, metavar="MANIFEST",
                   help="calibration audio manifest (no transcripts needed), for csp pruning and gptq plans")
    p.add_argument("--noise", default="", help="comma-separated: white,pink,babble, an audio file or a manifest")
    p.add_argument("--snr", default="", help="comma-separated SNRs in dB, e.g. 20,10,5,0")
    p.add_argument("--data", required=True, help="manifest (as for eval) or 'samples'")
    p.add_argument("--limit", type=_positive_int, default=None, help="first N utterances only")
    p.add_argument("--device", default="jetson-orin-nano", help="device profile for modeled energy")
    p.add_argument("--peers", default="int8,float32", help="faster-whisper compute types ('' = none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--beam-size", type=_positive_int, default=1, help="1 = greedy")
    _decode_args(p)
    p.add_argument("--threads", type=_positive_int, default=None, help="torch intra-op threads (per task)")
    _engine_args(p)
    _executor_args(p, "the cells")
    p.add_argument("--out", required=True, help="results JSONL (its folder must exist); rerunning the "
                   "same command resumes it, a command with other inputs is refused")
    # fmt: on
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("report", help="HTML or Markdown report of bench results")
    p.add_argument("results", help="results JSONL from `weightwise bench`")
    p.add_argument("-o", "--output", required=True, help="report.html (self-contained) or report.md")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser(
        "stream", help="streaming transcription: a file paced in real time, the microphone, or a manifest"
    )
    # fmt: off
    p.add_argument("file", nargs="?", default=None, help="audio file to stream (paced in real time)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="registered name or checkpoint path")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--cache-dir", default=None, help="where converted weights are cached")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch intra-op threads")
    p.add_argument("--chunk-ms", type=_positive_int, default=1000, help="decode every this many ms of audio")
    p.add_argument("--vad", action="store_true", help="gate decodes with silero-vad (silence is not decoded)")
    p.add_argument("--encoder-context", default=None,
                   help="encoder positions per re-decode (default 'auto': the buffer + a margin; 1500: all)")
    p.add_argument("--no-pace", action="store_true", help="feed the file as fast as it decodes")
    p.add_argument("--mic", action="store_true", help="stream from the default input device (needs sounddevice)")
    p.add_argument("--data", default=None, help="evaluate a manifest (simulated real-time pacing) instead")
    p.add_argument("--limit", type=_positive_int, default=None, help="first N utterances only")
    p.add_argument("--device", default="jetson-orin-nano", help="device profile for modeled energy (--data)")
    p.add_argument("--out", default=None, help="JSON result (required with --data; written atomically)")
    # fmt: on
    p.set_defaults(func=cmd_stream, plan=None)
    p = sub.add_parser("train-transducer", help="train a streaming transducer on a manifest (CPU, resumable)")
    # fmt: off
    p.add_argument("--data", required=True, help="manifest.jsonl with `split` fields (e.g. fsdd_digits)")
    p.add_argument("--out", required=True, help="output folder: checkpoint.pt (resumed on rerun), model/")
    p.add_argument("--encoder", choices=("conformer", "recurrent"), default="conformer")
    p.add_argument("--model-config", default=None, metavar="JSON",
                   help='more TransducerConfig fields, inline or a file: {"n_layers": 4, "n_unique_layers": 2}')
    p.add_argument("--steps", type=_positive_int, default=2000)
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--noise", default=None, metavar="DIR", help="folder of noise audio mixed into digit strings")
    p.add_argument("--noise-prob", type=float, default=0.5, help="share of digit strings with noise")
    p.add_argument("--repeat-prob", type=float, default=0.0, help="chance a digit repeats the one before")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (cosine decay after warm-up)")
    p.add_argument("--warmup-steps", type=int, default=150)
    p.add_argument("--init", default=None, metavar="DIR", help="start from this model folder (fine-tuning)")
    p.add_argument("--speed-perturb", type=float, default=0.0, help="s: utterances at speed 1-s, 1 or 1+s")
    p.add_argument("--time-masks", type=int, default=0, help="time masks (up to 80 ms each) per utterance")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_positive_int, default=1, help="torch intra-op threads")
    # fmt: on
    p.set_defaults(func=cmd_train_transducer)
    p = sub.add_parser("models", help="list the registered model names")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as err:
        print(f"weightwise: error: {err}", file=sys.stderr)
        return InputError.exit_code
    except KeyboardInterrupt:
        print("weightwise: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
