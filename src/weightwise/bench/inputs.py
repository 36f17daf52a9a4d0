"""Everything a bench depends on, read and checked before its first cell, with content hashes.

`load_inputs` reads the device profile, the data manifest and all its audio, every noise clip,
every plan (and the calibration audio of csp plans), and loads every model once, so that a bad
input stops the bench before any cell runs. It also records what each cell's result depends on
(`BenchInputs.of(cell)`): content hashes, not paths or file times, so the same data moved to
another folder still resumes, and changed data never does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from weightwise.audio.noise import NoiseSource, load_clip
from weightwise.compress import Plan
from weightwise.compress.loading import needs_calibration
from weightwise.data import Manifest, Utterance, iter_audio, open_manifest, resolve_noise
from weightwise.decode.search import max_new_tokens
from weightwise.errors import InputError
from weightwise.evaluate.peer import check_peer
from weightwise.evaluate.runtime import threads
from weightwise.models import load_model
from weightwise.models.onnx_engine import is_onnx_export, load_onnx_export, source_model
from weightwise.models.registry import file_sha256
from weightwise.profile import DeviceSpec, load_device

if TYPE_CHECKING:  # matrix.py imports this module: these names are for annotations only
    from weightwise.bench.matrix import BenchConfig, Cell

RUN_KEYS = ("data_sha256", "limit", "seed", "device", "device_sha256", "decoding", "threads")
CELL_KEYS = ("weights_sha256", "plan_sha256", "calib_sha256", "noise_sha256")


@dataclass(frozen=True)
class BenchInputs:
    """The loaded inputs of a bench and the hashes that identify them."""

    manifest: Manifest  # the data, cut to --limit
    audio: tuple[tuple[Utterance, np.ndarray], ...]  # its utterances at 16 kHz
    device: DeviceSpec
    noises: Mapping[str, NoiseSource]  # by spec as given
    plans: Mapping[str, Plan]  # by path as given
    calib: Manifest | None  # for csp plans
    run: Mapping[str, Any]  # RUN_KEYS: the same for every cell
    weights_sha256: Mapping[str, str]  # by model as given
    plan_sha256: Mapping[str, str]
    noise_sha256: Mapping[str, str | None]  # None: generated noise
    calib_sha256: str | None

    def needs_calib(self, plan: str | None) -> bool:
        return plan is not None and _needs_calib(self.plans[plan])

    def of(self, cell: Cell) -> dict[str, Any]:
        """Everything `cell`'s result depends on beyond its coordinates (RUN_KEYS + CELL_KEYS)."""
        return {
            **self.run,
            "weights_sha256": self.weights_sha256[cell.model],
            "plan_sha256": self.plan_sha256[cell.plan] if cell.plan else None,
            "calib_sha256": self.calib_sha256 if self.needs_calib(cell.plan) else None,
            "noise_sha256": self.noise_sha256[cell.noise] if cell.noise else None,
        }


def load_inputs(config: BenchConfig) -> BenchInputs:
    """Read and check every input of `config` (see the module docstring); InputError on the first
    bad one."""
    device = load_device(config.device)
    manifest = open_manifest(config.data, config.limit)
    audio = tuple(iter_audio(manifest))
    noises = {spec: resolve_noise(spec) for spec in config.noises}
    noise_sha = {spec: _noise_sha256(source) for spec, source in noises.items()}
    plans = {path: Plan.from_json(path) for path in config.plans}
    _check_plan_names(plans)
    calib = _calib(config, plans)
    weights = {model: _model_sha256(model, config, plans) for model in config.models}
    run = {
        "data_sha256": _utterances_sha256(manifest),
        "limit": config.limit,
        "seed": config.seed,
        "device": device.name,
        "device_sha256": _file_sha256(Path(device.path)),
        "decoding": asdict(config.decoding),
        "threads": threads(),
    }
    return BenchInputs(
        manifest,
        audio,
        device,
        noises,
        plans,
        calib,
        run,
        weights,
        {path: _json_sha256(plan.to_dict()) for path, plan in plans.items()},
        noise_sha,
        _utterances_sha256(calib) if calib is not None else None,
    )


def differing(recorded: Mapping[str, Any] | None, current: Mapping[str, Any], keys: tuple[str, ...]) -> list[str]:
    """The `keys` whose recorded value is not the current one."""
    recorded = recorded or {}
    return [k for k in keys if k not in recorded or recorded[k] != current[k]]


def _needs_calib(plan: Plan) -> bool:
    return needs_calibration(plan) and plan.state is None  # a state file carries the calibrated tensors


def _check_plan_names(plans: Mapping[str, Plan]) -> None:
    """Rows and reports name a plan by its file stem: two different plans may not share one."""
    by_name: dict[str, str] = {}
    for path, plan in plans.items():
        if plan.name in by_name:
            raise InputError(
                f"--plan {path} and --plan {by_name[plan.name]} are both named "
                f"'{plan.name}' (rows name plans by file stem); rename one"
            )
        by_name[plan.name] = path


def _calib(config: BenchConfig, plans: Mapping[str, Plan]) -> Manifest | None:
    csp = [path for path, plan in plans.items() if _needs_calib(plan)]
    if csp and config.calib is None:
        raise InputError(
            f"--plan {csp[0]} prunes with csp or quantizes with gptq, which needs calibration audio (--calib MANIFEST)"
        )
    if config.calib is None:
        return None
    if not csp:
        raise InputError("--calib is used only by csp pruning and gptq plans, and no --plan has either")
    calib = open_manifest(config.calib, None)
    for _ in iter_audio(calib):  # every file decodes (compress_ reads them all)
        pass
    return calib


def _model_sha256(name: str, config: BenchConfig, plans: Mapping[str, Plan]) -> str:
    """Load `name` once at fp32: it resolves, every plan matches its modules, peers can run it.
    Returns the hash of its weights (a compressed folder: also of its saved state)."""
    if config.engine == "onnxruntime":  # an export folder: its files checked, its sessions opened
        model = load_onnx_export(name)
        identity = _json_sha256(model.manifest["files"])
        max_new_tokens(model, config.decoding)
        for compute_type in config.peers:  # the peer runs the weights the export was made from
            try:
                check_peer(compute_type, Path(load_model(source_model(name, config.engine)).info.source))
            except InputError as err:
                raise InputError(f"--peers {compute_type} with --model {name}: {err}") from None
        return identity
    if is_onnx_export(name):
        raise InputError(f"--model {name}: an ONNX export folder; run it with --engine onnxruntime")
    model = load_model(name)
    max_new_tokens(model, config.decoding)  # a limit the decoder cannot hold fails now, not in the first cell
    identity = model.info.weights_sha256
    source = Path(model.info.source)
    if model.plan is not None:  # a folder written by `weightwise compress`
        saved = sorted(p for p in source.iterdir() if p.is_file())
        identity = _json_sha256([identity, *(_file_sha256(p) for p in saved)])
        if set(config.precisions) - {"fp32"}:
            raise InputError(f"--model {name} is compressed: it runs at fp32 only (--precision fp32)")
    for path, plan in plans.items():
        try:
            plan.resolve(model.network)
        except InputError as err:
            raise InputError(f"--plan {path} on --model {name}: {err}") from None
    for compute_type in config.peers:
        try:
            check_peer(compute_type, source)
        except InputError as err:
            raise InputError(f"--peers {compute_type} with --model {name}: {err}") from None
    return identity


def _noise_sha256(source: NoiseSource) -> str | None:
    """Hash of the clips in order (a seeded pick indexes them); each is read and checked now."""
    for path in source.paths:
        clip = load_clip(path)
        if clip.size == 0 or not np.isfinite(clip).all() or not np.any(clip):
            raise InputError(f"noise {source.name}: {path} is empty, silent or not finite")
    return _json_sha256([_file_sha256(p) for p in source.paths]) if source.paths else None


def _utterances_sha256(manifest: Manifest) -> str:
    """Hash of each utterance's id, reference text and audio bytes, in order."""
    return _json_sha256([[u.id, u.text, _file_sha256(u.audio_path)] for u in manifest])


def _file_sha256(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from None


def _json_sha256(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode("utf-8")).hexdigest()
