"""The benchmark matrix: models x precisions/plans x (clean + noise x SNR), plus peer rows.

Each cell transcribes the same utterances (noise mixed outside the timer, seeded per utterance,
noise and SNR) and appends one JSON line to the results file as soon as it finishes. A rerun of
the same command skips every cell already in the file, so a killed run resumes without
recomputing or losing a finished cell; a torn last line (killed mid-write) is dropped.

Energy per cell: the model's weight traffic and MACs are traced once per model variant on clean
audio, then scaled to the cell's own decode (its encoder windows and decoder calls: see
`weightwise.profile.trace.scale_trace`), so timed runs carry no hooks.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from weightwise.data import Manifest
from weightwise.decode import DecodeCounter, transcribe
from weightwise.evaluate.evaluate import UtteranceResult, iter_audio, score_fields
from weightwise.evaluate.runtime import host, peak_rss_mb, reset_peak_rss

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
    def key(self) -> str:
        plan = Path(self.plan).stem if self.plan else None
        return json.dumps([self.system, self.model, self.precision, plan, self.noise, self.snr_db])


@dataclass(frozen=True)
class BenchConfig:
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

    def conditions(self) -> list[tuple[str | None, float | None]]:
        return [(None, None)] + [(noise, snr) for noise in self.noises for snr in self.snrs_db]

    def cells(self) -> list[Cell]:
        out = []
        for model in self.models:
            variants = [(p, None) for p in self.precisions] + [("fp32", plan) for plan in self.plans]
            for precision, plan in variants:
                out += [Cell("weightwise", model, precision, plan, n, s) for n, s in self.conditions()]
            for compute_type in self.peers:
                out += [Cell("faster-whisper", model, compute_type, None, n, s) for n, s in self.conditions()]
        return out


def read_finished(path: Path) -> dict[str, dict[str, Any]]:
    """Rows already in `path`, by cell key; a torn (unterminated) last line is cut off the file."""
    if not path.is_file():
        return {}
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with open(path, "r+b") as handle:  # drop the torn tail so appends start on a new line
            handle.truncate(len(complete))
    rows = {}
    for line in complete.decode("utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows[row["cell"]] = row
    return rows


def append_row(path: Path, row: dict[str, Any]) -> None:
    """One line per write, flushed and fsynced: a reader sees whole rows or a torn tail only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def noisy_items(manifest: Manifest, noise, snr_db: float | None, seed: int) -> Iterator[tuple[Any, np.ndarray]]:
    """(utterance, samples) with noise mixed at `snr_db` (seeded per utterance/noise/SNR)."""
    from weightwise.audio.noise import add_noise, cell_seed

    for utt, samples in iter_audio(manifest):
        if noise is not None:
            samples = add_noise(samples, noise, snr_db, cell_seed(utt.id, noise.name, snr_db, seed))
        yield utt, samples


def timed_cell(run_one: Callable[[np.ndarray], str], items: Iterable,
               after_warmup: Callable[[], None] | None = None) -> list[UtteranceResult]:
    """Warm up on the first utterance, then time `run_one` per utterance (audio already in memory)."""
    items = list(items)
    run_one(items[0][1])
    if after_warmup is not None:
        after_warmup()
    results = []
    for utt, samples in items:
        start = time.perf_counter()
        text = run_one(samples)
        results.append(UtteranceResult(utt.id, utt.text, text, len(samples) / 16000,
                                       time.perf_counter() - start))
    return results


def cell_row(cell: Cell, results: list[UtteranceResult], extra: dict[str, Any]) -> dict[str, Any]:
    audio_s = sum(u.audio_s for u in results)
    compute_s = sum(u.compute_s for u in results)
    fields = score_fields(results)
    return {"cell": cell.key, **{k: v for k, v in asdict(cell).items() if k != "plan"},
            "plan": Path(cell.plan).stem if cell.plan else None, **fields,
            "n_utterances": len(results), "audio_s": audio_s, "rtf": compute_s / audio_s,
            "peak_rss_mb": peak_rss_mb(), "host": host(), **extra,
            "utterances": [{"id": u.id, "hyp": u.hyp} for u in results]}


class _Variants:
    """Loaded models, their reference traces and peer runners, one variant kept at a time."""

    def __init__(self, config: BenchConfig, manifest: Manifest):
        self.config, self.manifest, self.key, self.value = config, manifest, None, None

    def get(self, cell: Cell):
        key = (cell.system, cell.model, cell.precision, cell.plan)
        if key != self.key:
            self.key, self.value = None, None  # free the previous model first
            self.value, self.key = self._load(cell), key
        return self.value

    def _load(self, cell: Cell):
        from weightwise.models import load_model

        if cell.system == "faster-whisper":
            from weightwise.evaluate.peer import faster_whisper_runner
            from weightwise.evaluate.runtime import threads

            model_dir = Path(load_model(cell.model).info.source)
            return faster_whisper_runner(model_dir, cell.precision, threads()), None
        from weightwise.profile import trace_manifest

        model = load_model(cell.model, precision=cell.precision)
        if cell.plan:
            from weightwise.compress import Plan, compress_

            compress_(model, Plan.from_json(cell.plan))
        reference, _, _ = trace_manifest(model, self.manifest.head(min(5, len(self.manifest))))
        return model, reference


def _energy(reference, counter: DecodeCounter, audio_s: float, n_files: int, device) -> dict[str, Any]:
    from weightwise.profile import analyze
    from weightwise.profile.trace import scale_trace

    trace = scale_trace(reference, counter.n_windows, counter.n_decoder_calls, counter.n_tokens, audio_s, n_files)
    p = analyze(trace, device)
    return {"energy_j_per_audio_s": p.energy_j_per_audio_s, "offchip_bytes_per_audio_s": p.offchip_bytes_per_audio_s,
            "components": p.components, "model_bytes": p.model_bytes, "device": device.name}


def run_cell(cell: Cell, variants: _Variants, manifest: Manifest, noise, device, meter) -> dict[str, Any]:
    since_cell_start = reset_peak_rss()  # the peak then covers this cell only (load included)
    items = list(noisy_items(manifest, noise, cell.snr_db, variants.config.seed))
    runner, reference = variants.get(cell)
    counter = DecodeCounter()

    def run_one(samples):
        return runner(samples) if reference is None else transcribe(runner, samples, observer=counter).text

    def after_warmup():  # the counts and the meter window cover the timed utterances only
        counter.reset()
        if meter.available:
            meter.begin_window(cell.key)

    results = timed_cell(run_one, items, after_warmup)
    measured = meter.end_window(cell.key) if meter.available else None
    extra: dict[str, Any] = {"measured_energy_j": measured.energy_j if measured else None,
                             "meter": meter.name if meter.available else meter.reason}
    if reference is not None:
        extra.update(_energy(reference, counter, sum(u.audio_s for u in results), len(results), device))
    else:
        extra.update({"energy_j_per_audio_s": None, "model_bytes": None, "device": device.name,
                      "energy_note": "CTranslate2 runs outside torch: not traced"})
    row = cell_row(cell, results, extra)
    row["peak_rss_scope"] = "cell" if since_cell_start else "process"
    return row


def run_bench(config: BenchConfig, out: str | os.PathLike,
              progress: Callable[[Iterable, str], Iterable] | None = None) -> list[dict[str, Any]]:
    """Run every cell not yet in `out` (JSONL), appending one row per finished cell."""
    from weightwise.audio.noise import resolve_noise
    from weightwise.data import load_manifest
    from weightwise.profile import get_meter, load_device

    path = Path(out)
    device = load_device(config.device)
    noises = {name: resolve_noise(name) for name in config.noises}
    if config.data == "samples":
        from weightwise.data import sample_manifest

        manifest = sample_manifest()
    else:
        manifest = load_manifest(config.data)
    manifest = manifest.head(config.limit) if config.limit else manifest
    finished = read_finished(path)
    todo = [cell for cell in config.cells() if cell.key not in finished]
    variants, meter, rows = _Variants(config, manifest), get_meter("auto"), list(finished.values())
    for cell in (progress(todo, "bench cells") if progress else todo):
        start = time.perf_counter()
        row = run_cell(cell, variants, manifest, noises.get(cell.noise), device, meter)
        row["wall_s"] = time.perf_counter() - start  # the whole cell: load/trace if new, mixing, warm-up
        append_row(path, row)
        rows.append(row)
    return rows
