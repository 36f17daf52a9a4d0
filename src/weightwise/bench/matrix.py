"""The benchmark matrix: models x precisions/plans x (clean + noise x SNR), plus peer rows.

Each cell transcribes the same utterances (noise mixed outside the timer, seeded per utterance,
noise and SNR) and appends one typed row (`BenchRow`, one JSON line) to the results file as soon as
it finishes. Every input is read and checked before the first cell (`weightwise.bench.inputs`), and
the file is locked against a second bench (`weightwise.bench.file`). A rerun of the same command skips every cell
already in the file, so a killed run resumes without recomputing or losing a finished cell; a torn
last line (killed mid-write) is dropped. A row is reused only when it answers the same question:
each row records its inputs (data, weights, plan, calibration and noise content, device profile,
limit, seed, decoding options, threads), and a file whose rows were computed from other inputs is
refused with one line rather than silently mixed with new rows or reported as this command's.

Cells run where an executor puts them (`weightwise.executors`): in this process, one after the
other (`local`, the default), or as Ray tasks, each loading its model in its worker (kept there for
the run's next cells). Either way the rows come back to this process, which alone writes `out`.

Energy per cell: the model's weight traffic and MACs are traced once per model variant on clean
audio, then scaled to the cell's own decode (its encoder windows and decoder calls: see
`weightwise.profile.trace.scale_trace`), so timed runs carry no hooks.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from weightwise.audio.noise import add_noise, cell_seed, noise_label
from weightwise.bench.file import append_row, check_out_path, exclusive_lock, repair_tail
from weightwise.bench.inputs import CELL_KEYS, RUN_KEYS, BenchInputs, differing, load_inputs
from weightwise.bench.row import ROW_VERSION, BenchRow, cell_key, read_rows
from weightwise.compress.loading import load_model_with_plan
from weightwise.decode import DecodeCounter, DecodingOptions, transcribe
from weightwise.errors import InputError
from weightwise.evaluate.evaluate import UtteranceResult, score_fields
from weightwise.evaluate.peer import faster_whisper_runner
from weightwise.evaluate.runtime import host, peak_rss_mb, reset_peak_rss, threads, weight_kernels
from weightwise.evaluate.timing import warm_up_and_time
from weightwise.executors import Executor, LocalExecutor, timed_share
from weightwise.models import PRECISIONS, load_model
from weightwise.models.onnx_engine import ENGINES, load_onnx_export, source_model
from weightwise.profile import analyze, get_meter, trace_manifest
from weightwise.profile.trace import scale_trace

PEER_COMPUTE_TYPES = ("int8", "float32")


@dataclass(frozen=True)
class Cell:
    """One row of the matrix."""

    system: str  # "weightwise" | "faster-whisper"
    model: str
    precision: str  # ours: fp32/fp16/bf16/int8; peer: CTranslate2 compute type
    plan: str | None  # plan file path (weightwise only)
    noise: str | None  # None = clean
    snr_db: float | None

    @property
    def plan_name(self) -> str | None:
        return Path(self.plan).stem if self.plan else None

    @property
    def key(self) -> str:
        return cell_key(self.system, self.model, self.precision, self.plan_name, self.noise, self.snr_db)


@dataclass(frozen=True)
class BenchConfig:
    """What to run; the option checks that need no file run here, the rest in `load_inputs`."""

    models: tuple[str, ...]
    data: str
    precisions: tuple[str, ...] = ("fp32",)
    plans: tuple[str, ...] = ()  # run at fp32
    noises: tuple[str, ...] = ()
    snrs_db: tuple[float, ...] = ()
    device: str = "jetson-orin-nano"
    peers: tuple[str, ...] = PEER_COMPUTE_TYPES  # faster-whisper compute types; () = none
    limit: int | None = None
    seed: int = 0
    calib: str | None = None  # calibration manifest for csp plans
    decoding: DecodingOptions = field(default_factory=DecodingOptions)
    engine: str = "torch"  # "onnxruntime": `models` are export folders (`weightwise export --format onnx`)

    def __post_init__(self) -> None:
        if not self.models:
            raise InputError("--model: give at least one model")
        if not self.precisions and not self.plans:
            raise InputError("--precision: give at least one precision or a --plan")
        for precision in self.precisions:
            if precision not in PRECISIONS:
                raise InputError(f"--precision {precision!r}: choose from {', '.join(PRECISIONS)}")
        for snr in self.snrs_db:
            if isinstance(snr, bool) or not isinstance(snr, (int, float)) or not math.isfinite(snr):
                raise InputError(f"--snr {snr!r}: an SNR must be a finite number of dB")
        if self.noises and not self.snrs_db:
            raise InputError("--noise needs --snr (e.g. --snr 20,10,5,0)")
        if self.snrs_db and not self.noises:
            raise InputError("--snr needs --noise (e.g. --noise white)")
        if self.limit is not None and (
            isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1
        ):
            raise InputError(f"--limit must be a positive integer, got {self.limit!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InputError(f"--seed must be an integer, got {self.seed!r}")
        _check_labels("--noise", self.noises)
        if self.engine not in ENGINES:
            raise InputError(f"--engine {self.engine!r}: choose from {', '.join(ENGINES)}")
        if self.engine == "onnxruntime" and (self.plans or set(self.precisions) != {"fp32"}):
            raise InputError("--engine onnxruntime: an export holds its plan and precisions; drop --plan/--precision")

    @property
    def system(self) -> str:
        """The rows' system name for our decode: "weightwise" (torch) or "weightwise-onnxruntime"."""
        return "weightwise" if self.engine == "torch" else "weightwise-onnxruntime"

    def conditions(self) -> list[tuple[str | None, float | None]]:
        return [(None, None)] + [(noise, snr) for noise in self.noises for snr in self.snrs_db]

    def cells(self) -> list[Cell]:
        """Every cell once (a value listed twice is one cell), models outermost."""
        out = []
        for model in self.models:
            variants = [(p, None) for p in self.precisions] + [("fp32", plan) for plan in self.plans]
            for precision, plan in variants:
                out += [Cell(self.system, model, precision, plan, n, s) for n, s in self.conditions()]
            for compute_type in self.peers:
                out += [Cell("faster-whisper", model, compute_type, None, n, s) for n, s in self.conditions()]
        unique: dict[str, Cell] = {}
        for cell in out:
            unique.setdefault(cell.key, cell)
        return list(unique.values())


def _check_labels(flag: str, specs: tuple[str, ...]) -> None:
    """Reports name a noise by its short label: two different specs may not share one."""
    seen: dict[str, str] = {}
    for spec in specs:
        label = noise_label(spec)
        if seen.get(label, spec) != spec:
            raise InputError(f"{flag} {spec} and {seen[label]} are both named '{label}' in reports; rename one")
        seen[label] = spec


def noisy_items(
    audio: Iterable[tuple[Any, np.ndarray]], noise, snr_db: float | None, seed: int
) -> Iterator[tuple[Any, np.ndarray]]:
    """(utterance, samples) with noise mixed at `snr_db` (seeded per utterance/noise/SNR)."""
    for utt, samples in audio:
        if noise is not None:
            samples = add_noise(samples, noise, snr_db, cell_seed(utt.id, noise.name, snr_db, seed))
        yield utt, samples


def cell_row(cell: Cell, results: list[UtteranceResult], extra: dict[str, Any]) -> BenchRow:
    audio_s = sum(u.audio_s for u in results)
    compute_s = sum(u.compute_s for u in results)
    return BenchRow(
        system=cell.system,
        model=cell.model,
        precision=cell.precision,
        plan=cell.plan_name,
        noise=cell.noise,
        snr_db=cell.snr_db,
        **score_fields(results),
        n_utterances=len(results),
        audio_s=audio_s,
        rtf=compute_s / audio_s,
        peak_rss_mb=peak_rss_mb(),
        host=host(),
        **extra,
        utterances=tuple({"id": u.id, "hyp": u.hyp} for u in results),
    )


class _Variants:
    """Loaded models, their reference traces and peer runners, one variant kept at a time."""

    def __init__(self, config: BenchConfig, inputs: BenchInputs):
        self.config, self.inputs, self.key, self.value = config, inputs, None, None

    def get(self, cell: Cell):
        key = (cell.system, cell.model, cell.precision, cell.plan)
        if key != self.key:
            self.key, self.value = None, None  # free the previous model first
            self.value, self.key = self._load(cell), key
        return self.value

    def _load(self, cell: Cell):
        options = self.config.decoding
        if cell.system == "faster-whisper":
            model_dir = Path(load_model(source_model(cell.model, self.config.engine)).info.source)
            return faster_whisper_runner(model_dir, cell.precision, threads(), options), None
        if cell.system == "weightwise-onnxruntime":  # not traced: its network runs outside torch
            exported = load_onnx_export(cell.model, threads())
            return (lambda samples: transcribe(exported, samples, options).text), None
        plan = self.inputs.plans[cell.plan] if cell.plan else None  # parsed and hashed up front
        calib = self.inputs.calib if self.inputs.needs_calib(cell.plan) else None
        model = load_model_with_plan(cell.model, cell.precision, plan=plan, calib=calib)
        reference, _, _ = trace_manifest(model, self.inputs.manifest.head(5), options)
        return model, reference


def _energy(reference, counter: DecodeCounter, audio_s: float, n_files: int, device) -> dict[str, Any]:
    trace = scale_trace(reference, counter.n_windows, counter.n_decoder_calls, counter.n_tokens, audio_s, n_files)
    p = analyze(trace, device)
    return {
        "energy_j_per_audio_s": p.energy_j_per_audio_s,
        "offchip_bytes_per_audio_s": p.offchip_bytes_per_audio_s,
        "components": p.components,
        "model_bytes": p.model_bytes,
        "device": device.name,
    }


def _measured(window, meter, tasks_on_node: int) -> dict[str, Any]:
    measured = window.measurement
    if measured is not None and tasks_on_node > 1:
        reason = f"{tasks_on_node} bench tasks shared the machine while timed: its meter cannot split their energy"
        return {"measured_energy_j": None, "meter": meter.name, "meter_reason": reason}
    reason = None if measured else meter.reason or None
    return {"measured_energy_j": measured.energy_j if measured else None, "meter": meter.name, "meter_reason": reason}


def _kernels(cell: Cell, runner) -> str | None:
    """What the cell's weights ran on (`weight_kernels`; the faster-whisper peer: "ctranslate2")."""
    network = getattr(runner, "network", None)
    if network is not None:
        return weight_kernels(network)
    return "ctranslate2" if cell.system == "faster-whisper" else None


def run_cell(cell: Cell, variants: _Variants, meter, executor: str = "local") -> BenchRow:
    inputs, config = variants.inputs, variants.config
    since_cell_start = reset_peak_rss()  # the peak then covers this cell only (load included)
    items = list(noisy_items(inputs.audio, inputs.noises.get(cell.noise), cell.snr_db, config.seed))
    runner, reference = variants.get(cell)
    counter = DecodeCounter()

    def run_one(samples, _id):
        if reference is None:
            return runner(samples)
        return transcribe(runner, samples, config.decoding, observer=counter).text

    window = meter.window(cell.key)  # entered after the warm-up: it covers the timed utterances only
    with timed_share() as share:
        results = [
            UtteranceResult(t.utterance.id, t.utterance.text, t.output, t.audio_s, t.compute_s)
            for t in warm_up_and_time({cell.key: run_one}, items, counter.reset, window)
        ]
    extra: dict[str, Any] = {
        **_measured(window, meter, share.tasks_on_node),
        "executor": executor,
        "tasks_on_node": share.tasks_on_node,
        "kernels": _kernels(cell, runner),
        "peak_rss_scope": "cell" if since_cell_start else "process",
        "data": config.data,
        "inputs": inputs.of(cell),
        "version": ROW_VERSION,
    }
    if reference is not None:
        extra.update(_energy(reference, counter, sum(u.audio_s for u in results), len(results), inputs.device))
    else:
        extra.update(
            {
                "energy_j_per_audio_s": None,
                "model_bytes": None,
                "device": inputs.device.name,
                "energy_note": f"{'ONNX Runtime' if cell.system.endswith('onnxruntime') else 'CTranslate2'} "
                "runs outside torch: not traced",
            }
        )
    return cell_row(cell, results, extra)


def resumable_rows(path: Path, cells: list[Cell], inputs: BenchInputs) -> dict[str, BenchRow]:
    """Rows of `path` by cell key, after checking that every row answers this bench's question:
    the run-wide inputs of every row, and all inputs of a row for one of `cells`, equal ours."""
    ours = {cell.key: cell for cell in cells}
    finished = {}
    for line, row in read_rows(path) if path.is_file() else ():
        where = f"--out {path}:{line}"
        if row.version == 0:
            raise InputError(
                f"{where}: a version-0 row records none of its inputs, so a resume cannot tell "
                "whether it answers this command; use another --out"
            )
        cell = ours.get(row.cell)
        current = inputs.of(cell) if cell else inputs.run
        keys = RUN_KEYS + CELL_KEYS if cell else RUN_KEYS
        diff = differing(row.inputs, current, keys)
        if diff:
            raise InputError(
                f"{where}: holds results for other inputs ({', '.join(diff)} differ); "
                "use another --out, or rerun the command that wrote it"
            )
        finished[row.cell] = row
    return finished


@dataclass(frozen=True)
class _Run:
    """What every cell task of one bench needs (sent once to each Ray worker)."""

    config: BenchConfig
    inputs: BenchInputs
    token: str  # names the run: a worker keeps its loaded model and meter for the run's next cells
    executor: str


_worker: dict[str, tuple[_Variants, Any]] = {}  # run token -> this process's loaded model and meter


def _cell_task(run: _Run, cell: Cell) -> BenchRow:
    """One cell, in whatever process the executor runs it."""
    if run.token not in _worker:
        _worker.clear()  # an earlier run's model
        _worker[run.token] = (_Variants(run.config, run.inputs), get_meter("auto"))
    variants, meter = _worker[run.token]
    start = time.perf_counter()
    row = run_cell(cell, variants, meter, run.executor)
    # the whole cell: load/trace if new, mixing, warm-up
    return dataclasses.replace(row, wall_s=time.perf_counter() - start)


def run_bench(
    config: BenchConfig,
    out: str | os.PathLike,
    progress: Callable[[Iterable, str], Iterable] | None = None,
    executor: Executor | None = None,
) -> list[BenchRow]:
    """Run every cell not yet in `out` (JSONL), appending one row per finished cell.

    Before the first cell: `out` is checked and locked, every input is read and checked, and the
    rows already in `out` must answer the same question (see `resumable_rows`). `executor` runs
    the cells (default: here, one after the other); this process appends every row as it arrives.
    """
    path = Path(out)
    check_out_path(path)
    with exclusive_lock(path):
        inputs = load_inputs(config)
        cells = config.cells()
        finished = resumable_rows(path, cells, inputs)
        repair_tail(path)  # only now: `path` holds this bench's rows, whatever its tail is
        todo = [cell for cell in cells if cell.key not in finished]
        executor = executor or LocalExecutor()
        run, rows = _Run(config, inputs, uuid.uuid4().hex, executor.name), list(finished.values())
        with get_meter("auto") as meter:
            if executor.name == "local":
                _worker.clear()
                _worker[run.token] = (_Variants(config, inputs), meter)
            try:
                done = (row for _, row in executor.map(_cell_task, todo, run))
                for row in progress(done, "bench cells") if progress else done:
                    append_row(path, row.to_dict())
                    rows.append(row)
            finally:
                _worker.clear()  # the local model and meter
    return rows
