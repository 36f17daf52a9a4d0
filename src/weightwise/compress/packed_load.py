"""Load quantized layers straight into packed form: a saved compressed model's (`load_compressed`
with ``pack=True``) and a plan's GPTQ layers from its state file (`gptq_from_state`, for
`load_model_with_plan`): the saved codes are packed as they are read; no simulated module is built."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from weightwise.compress.configs import Gptq, Quant, Screen
from weightwise.compress.modules import HANDLERS, Handler, replace_module
from weightwise.compress.packed import PackedQuantModule, packable_config
from weightwise.compress.quantize import QuantModule
from weightwise.compress.state import holds_state, take_state
from weightwise.compress.weightop import flat_weight, op_of, replace_group, tied_groups
from weightwise.errors import InputError
from weightwise.evaluate.runtime import release_freed_memory


def packable_spec(kind: str, spec: dict[str, Any]) -> bool:
    """Whether a saved module (its manifest `kind` and `spec`) loads packed."""
    if kind != QuantModule.kind:
        return False
    try:
        config = Quant(spec["bits"], spec["granularity"], spec["group_size"], spec["symmetric"])
        return packable_config(spec["op"], config, int(torch.Size(spec["shape"][1:]).numel()))
    except (KeyError, TypeError, ValueError, InputError):
        return False  # rebuilt (and refused, if it must be) by the simulated path


def load_packed(network: nn.Module, tensors, specs: dict[str, dict[str, Any]], shared: list[list[str]]) -> None:
    """Replace the modules named in `specs` (saved `QuantModule` specs) by `PackedQuantModule`s
    packed from their saved codes; `tensors(key)` returns a saved tensor, `shared` lists the state
    names saved once for several (a tied pair's codes). Raises ValueError on a missing or
    mis-shaped tensor."""
    alias = {name: group for group in shared for name in group}
    owners: dict[str, PackedQuantModule] = {}
    for name, spec in sorted(specs.items(), key=lambda item: item[1].get("tie") is not None):
        config = Quant(spec["bits"], spec["granularity"], spec["group_size"], spec["symmetric"])
        base = list(network.get_submodule(name).weight.shape)
        if base != list(spec["shape"]):
            raise ValueError(f"{name} was saved with shape {spec['shape']}, the base model's is {base}")
        bias = _saved(tensors, f"{name}.bias", alias) if spec.get("bias") else None
        owner = owners.get(spec.get("tie") or "")
        if owner is not None:
            module = owner.tied(spec["op"], spec.get("op_args") or {}, bias, spec["tie"])
        else:
            state = tuple(
                _saved(tensors, f"{name}.{key}", alias) if needed else None
                for key, needed in (
                    ("codes", True),
                    ("scales", config.bits != 16),
                    ("zero_points", config.bits != 16 and not config.symmetric),
                )
            )
            _check_shapes(name, spec["shape"], config, state)
            module = owners[name] = PackedQuantModule.from_state(
                spec["op"], spec["shape"], spec.get("op_args") or {}, None, config, state, bias
            )
        replace_module(network, name, module)


def _saved(tensors, key: str, alias: dict[str, list[str]]) -> torch.Tensor:
    for candidate in alias.get(key, [key]):
        tensor = tensors(candidate)
        if tensor is not None:
            return tensor
    raise ValueError(f"no saved tensor {key}")


def _scale_shape(rows: int, cols: int, config: Quant) -> tuple[int, int]:
    """Shape of a `QuantModule`'s scales (and zero points)."""
    return {"tensor": (1, 1), "channel": (rows, 1), "group": (rows, cols // config.group_size)}[config.granularity]


def _check_shapes(name: str, shape: list[int], config: Quant, state: tuple) -> None:
    rows, cols = shape[0], int(torch.Size(shape[1:]).numel())
    expected = ((rows, cols), _scale_shape(rows, cols, config), _scale_shape(rows, cols, config))
    for tensor, want, what in zip(state, expected, ("codes", "scales", "zero_points"), strict=True):
        if tensor is not None and tuple(tensor.shape) != want:
            raise ValueError(f"{name}.{what} has shape {tuple(tensor.shape)}, expected {want}")
    dtype = torch.float16 if config.bits == 16 else torch.int8 if config.symmetric else torch.uint8
    if state[0].dtype != dtype:
        raise ValueError(f"{name}.codes is {state[0].dtype}, expected {dtype}")


def gptq_from_state(tensors: dict[str, torch.Tensor], path: str | Path) -> Handler:
    """The `Gptq` handler of a plan rebuilt from its state file: each claimed module (tied ones once)
    gets the codes, scales and zero points the file holds for it (`tensors`, from `read_plan_state`;
    taken out as used), packed straight into a `PackedQuantModule`; a layer no kernel runs becomes
    a rounded-to-nearest `QuantModule` that `load_plan_state` then loads its codes into. The heap is
    trimmed after each layer, so its float weight leaves the RSS. InputError: the file has no codes
    for a claimed module, or mis-shaped ones."""

    def handler(network: nn.Module, names: list[str], config: Gptq, context: Any) -> None:
        for group in tied_groups(network, names):
            _load_gptq_group(network, group, config.quant(), tensors, path)
            release_freed_memory()

    return handler


def _load_gptq_group(network: nn.Module, group: list[str], config: Quant, tensors: dict, path) -> None:
    modules = [network.get_submodule(name) for name in group]
    ops = [op_of(module, name) for module, name in zip(modules, group, strict=True)]
    shape = list(modules[0].weight.shape)
    rows, cols = shape[0], math.prod(shape[1:])
    if config.granularity == "group" and cols % config.group_size:
        raise InputError(f"{group[0]}: gptq group_size {config.group_size} does not divide its {cols} input elements")
    if not all(packable_config(op, config, cols) for op, _args in ops):  # simulated: the state loads into it
        replace_group(network, group, lambda module, name: QuantModule.from_float(module, name, config))
        return
    owner = next((n for n in group if holds_state(tensors, f"{n}.codes")), None)
    if owner is None:
        raise InputError(f"{path}: holds no codes for {group[0]}, which the plan quantizes with gptq")
    like = {  # what `QuantModule` holds
        "codes": torch.empty(rows, cols, dtype=torch.int8 if config.symmetric else torch.uint8, device="meta"),
        "scales": torch.empty(_scale_shape(rows, cols, config), device="meta"),
        "zero_points": torch.empty(_scale_shape(rows, cols, config), dtype=torch.uint8, device="meta"),
    }
    keys = ("codes", "scales") if config.symmetric else ("codes", "scales", "zero_points")
    state = tuple(take_state(tensors, f"{owner}.{key}", like[key], path) for key in keys)
    missing = [key for key, tensor in zip(keys, state, strict=True) if tensor is None]
    if missing:
        raise InputError(f"{path}: holds no {missing[0]} for {owner}, which the plan quantizes with gptq")
    # each module's fp32 bias as the file holds it (the float model's where the file has none)
    biases = [_bias(tensors, name, module, path) for module, name in zip(modules, group, strict=True)]
    first = PackedQuantModule.from_state(ops[0][0], shape, ops[0][1], None, config, state, biases[0])
    replace_module(network, group[0], first)
    for name, (op, op_args), bias in zip(group[1:], ops[1:], biases[1:], strict=True):
        replace_module(network, name, first.tied(op, op_args, bias, group[0]))


def _bias(tensors: dict, name: str, module: nn.Module, path) -> torch.Tensor | None:
    bias = getattr(module, "bias", None)
    if bias is None:
        return None
    saved = take_state(tensors, f"{name}.bias", torch.empty(bias.shape, device="meta"), path)
    return bias if saved is None else saved


def screen_from_state(tensors: dict[str, torch.Tensor], path: str | Path) -> Handler:
    """The `Screen` handler of a packed plan rebuilt from its state file: a whitened screen's
    preview and basis come from `tensors` (taken out as used), its fp16 table from the float weight,
    straight into `PackedScreenModule`s (no SVD, no float copy); a plain screen is built as
    `compress_` builds it (packed afterwards by `pack_`). InputError: the file lacks or mis-shapes
    one of them."""
    from weightwise.compress.packed_screen import PackedScreenModule

    def handler(network: nn.Module, names: list[str], config: Screen, context: Any) -> None:
        if not config.whiten:
            HANDLERS[Screen](network, names, config, context)
            return
        for group in tied_groups(network, names):
            modules = [network.get_submodule(name) for name in group]
            ops = [op_of(module, name) for module, name in zip(modules, group, strict=True)]
            if not any(isinstance(module, nn.Linear) for module in modules):
                raise InputError(f"{group[0]}: screen needs the output projection (a Linear over the vocabulary)")
            table = flat_weight(modules[0]).half()
            state = _screen_state(tensors, group, config, table.shape, path)
            biases = [_bias(tensors, name, module, path) for module, name in zip(modules, group, strict=True)]
            shape = list(modules[0].weight.shape)
            first = PackedScreenModule.from_state(ops[0][0], shape, ops[0][1], config, table, state, biases[0])
            replace_module(network, group[0], first)
            for name, (op, op_args), bias in zip(group[1:], ops[1:], biases[1:], strict=True):
                replace_module(network, name, first.tied(op, op_args, bias, group[0]))
            release_freed_memory()

    return handler


def _screen_state(tensors: dict, group: list[str], config: Screen, shape, path) -> tuple:
    """(preview codes, preview scales or None, basis) a whitened screen's tied `group` saved."""
    owner = next((n for n in group if holds_state(tensors, f"{n}.preview_codes")), None)
    if owner is None:
        raise InputError(f"{path}: holds no preview_codes for {group[0]}, which the plan screens whitened")
    rows, cols = shape
    code_dtype = torch.float16 if config.preview_bits == 16 else torch.int8
    like = {
        "preview_codes": torch.empty(rows, config.rank, dtype=code_dtype, device="meta"),
        "preview_scales": None if config.preview_bits == 16 else torch.empty(rows, 1, device="meta"),
        "basis": torch.empty(config.rank, cols, device="meta"),
    }
    state = {k: None if v is None else take_state(tensors, f"{owner}.{k}", v, path) for k, v in like.items()}
    missing = next((k for k, v in state.items() if v is None and like[k] is not None), None)
    if missing is not None:
        raise InputError(f"{path}: holds no {missing} for {owner}, which the plan screens whitened")
    return tuple(state.values())
