"""A plan's calibrated state: the tensors its calibration-dependent rules chose, saved beside the plan.

GPTQ codes, csp-pruned values and a whitened screen's preview depend on calibration audio. A plan
that names a state file (``"state": "<file>.safetensors"``, relative to the plan) rebuilds them
without that audio: each such rule is applied in its calibration-free form (GPTQ -> round-to-nearest
in the same storage format, csp -> magnitude pruning at the same sparsity, whitened screen -> plain
SVD), which gives modules of the same kinds and shapes, and the saved tensors are then loaded into
them. So `eval/profile --plan` reproduce the optimizer's weights exactly, fast, and with no access to
the calibration manifest (the bundled demo runs without ../shared).

The file holds only what calibration chose (codes, scales, zero points, masks, factors; 4-bit codes
two to a byte), not what the float weights give back (a screen's fp16 table), and records the
model weights' hash: a state made for another model is refused.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from weightwise.compress.configs import Gptq, Prune, Screen
from weightwise.compress.plan import Plan
from weightwise.compress.weightop import WeightOpModule
from weightwise.errors import InputError

FORMAT = "weightwise-plan-state/1"
_NIBBLES = "::nib4"  # suffix of a 4-bit tensor stored two values to a byte


def calibrated(config) -> bool:
    """Whether a rule's weights depend on calibration audio."""
    return (
        isinstance(config, Gptq)
        or (isinstance(config, Prune) and config.method == "csp")
        or (isinstance(config, Screen) and config.whiten)
    )


def calibration_free(plan: Plan, keep: tuple[type, ...] = ()) -> Plan:
    """`plan` with each calibrated rule in its calibration-free form (same module kinds and shapes);
    rules whose config is of a type in `keep` stay as they are."""

    def free(config):
        if isinstance(config, keep):
            return config
        if isinstance(config, Gptq):
            return config.quant()
        if isinstance(config, Prune) and config.method == "csp":
            return dataclasses.replace(config, method="magnitude")
        if isinstance(config, Screen) and config.whiten:
            return dataclasses.replace(config, whiten=False)
        return config

    rules = tuple(dataclasses.replace(r, config=free(r.config)) for r in plan.rules)
    return dataclasses.replace(plan, rules=rules)


def _calibrated_modules(network: torch.nn.Module, plan: Plan) -> dict[str, torch.nn.Module]:
    """name -> simulated compressed module of every module a calibrated rule claimed (first match wins)."""
    out = {}
    for name, module in network.named_modules():
        if not isinstance(module, WeightOpModule):  # simulated: a packed module is built, not loaded into
            continue
        rule = next((r for r in plan.rules if r.matches(name)), None)
        if rule is not None and calibrated(rule.config):
            out[name] = module
    return out


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    derived = set(getattr(module, "weightwise_derived", ()))
    tensors = {n: p for n, p in module.named_parameters(recurse=False) if p is not None and n not in derived}
    for name, buf in module.named_buffers(recurse=False):
        if buf is not None and name not in module._non_persistent_buffers_set and name not in derived:
            tensors[name] = buf
    return tensors


def _pack(tensor: torch.Tensor) -> tuple[str, torch.Tensor]:
    """("", tensor) or (_NIBBLES, two 4-bit values a byte) for an int8/uint8 tensor of 4-bit values."""
    t = tensor.detach().cpu().contiguous()
    if t.dtype not in (torch.int8, torch.uint8) or t.numel() == 0 or t.numel() % 2:
        return "", t
    low, high = (0, 15) if t.dtype == torch.uint8 else (-8, 7)
    if not (low <= int(t.min()) and int(t.max()) <= high):
        return "", t
    flat = (t.view(torch.uint8) if t.dtype == torch.int8 else t).reshape(-1) & 0x0F
    return _NIBBLES, (flat[0::2] | (flat[1::2] << 4)).contiguous()


def _unpack(packed: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    low, high = packed & 0x0F, packed >> 4
    flat = torch.stack([low, high], dim=-1).reshape(-1)
    if like.dtype == torch.int8:  # sign-extend the nibbles
        flat = (flat.to(torch.int16) - ((flat >= 8).to(torch.int16) << 4)).to(torch.int8)
    return flat.reshape(like.shape)


def save_plan_state(model, plan: Plan, path: str | Path) -> Path | None:
    """Write the calibrated tensors of `model` (compressed by `plan`) to `path`; None when the plan
    has no calibrated rule (nothing to save)."""
    modules = _calibrated_modules(model.network, plan)
    if not modules:
        return None
    tensors, seen = {}, set()
    for name, module in modules.items():
        for pname, tensor in _tensors(module).items():
            if id(tensor) in seen:  # tied modules share their state: saved once
                continue
            seen.add(id(tensor))
            suffix, stored = _pack(tensor)
            tensors[f"{name}.{pname}{suffix}"] = stored
    meta = {"format": FORMAT, "weights_sha256": model.info.weights_sha256, "rules": json.dumps(plan.to_dict()["rules"])}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def read_plan_state(model, path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of state file `path` (4-bit ones still two to a byte: take them with
    `take_state`), checked to be a plan state made for `model`'s weights."""
    path = Path(path)
    try:
        with safe_open(str(path), "pt") as handle:
            meta = handle.metadata() or {}
        tensors = load_file(str(path))
    except (OSError, RuntimeError, SafetensorError) as err:
        raise InputError(f"{path}: not a readable plan state file ({err})") from None
    if meta.get("format") != FORMAT:
        raise InputError(f"{path}: not a weightwise plan state ({FORMAT})")
    if meta.get("weights_sha256") != model.info.weights_sha256:
        raise InputError(f"{path}: made for other model weights than {model.info.name}'s")
    return tensors


def holds_state(tensors: dict[str, torch.Tensor], key: str) -> bool:
    """Whether `tensors` (`read_plan_state`) has tensor `key`, as it is or two 4-bit values a byte."""
    return key in tensors or key + _NIBBLES in tensors


def take_state(tensors: dict[str, torch.Tensor], key: str, like: torch.Tensor, path: str | Path) -> torch.Tensor | None:
    """Remove tensor `key` from `tensors` (`read_plan_state`) and return it unpacked, of `like`'s
    shape and dtype (`like` may be on the meta device); None when the file has no `key`."""
    packed = key + _NIBBLES in tensors
    stored = tensors.pop(key + _NIBBLES if packed else key, None)
    if stored is None:
        return None
    if packed and 2 * stored.numel() == like.numel() and like.dtype in (torch.int8, torch.uint8):
        stored = _unpack(stored, like)
    if stored.shape != like.shape or stored.dtype != like.dtype:
        found, wanted = (f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}" for t in (stored, like))
        raise InputError(f"{path}: tensor {key} is {found}, the plan's module has {wanted}")
    return stored


def load_plan_state(model, plan: Plan, path: str | Path, tensors: dict[str, torch.Tensor] | None = None) -> None:
    """Load `path` into `model`, already compressed by `calibration_free(plan)` (see the module doc).
    `tensors`: what `read_plan_state` read and no packed module has taken yet (None: read `path`);
    they must be all and only the tensors of the plan's calibrated simulated modules."""
    path = Path(path)
    tensors = read_plan_state(model, path) if tensors is None else tensors
    modules = _calibrated_modules(model.network, plan)
    expected = {f"{n}.{p}" for n, m in modules.items() for p in _tensors(m)}
    loaded: set[int] = set()
    with torch.no_grad():
        for key in list(tensors):
            key = key.removesuffix(_NIBBLES)
            if key not in expected:
                raise InputError(f"{path}: tensor {key} does not belong to the plan's calibrated modules")
            name, _, pname = key.rpartition(".")
            target = _tensors(modules[name])[pname]
            target.copy_(take_state(tensors, key, target, path))
            loaded.add(id(target))
    unloaded = (f"{n}.{p}" for n, m in modules.items() for p, t in _tensors(m).items() if id(t) not in loaded)
    missing = next(unloaded, None)
    if missing is not None:
        name, _, pname = missing.rpartition(".")
        raise InputError(f"{path}: holds no {pname} for {name}, which the plan calibrated")
    for name, module in modules.items():
        rule = next(r for r in plan.rules if r.matches(name))
        if isinstance(rule.config, Screen):
            module.config = rule.config  # recorded as made (whitened), not as rebuilt
        module.refresh()
