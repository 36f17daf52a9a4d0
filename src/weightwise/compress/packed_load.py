"""Load a saved compressed model's quantized layers straight into packed form (`load_compressed`
with ``pack=True``): the saved codes are packed as they are read; no simulated module is built."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from weightwise.compress.configs import Quant
from weightwise.compress.modules import replace_module
from weightwise.compress.packed import PackedQuantModule, packable_config
from weightwise.compress.quantize import QuantModule
from weightwise.errors import InputError


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


def _check_shapes(name: str, shape: list[int], config: Quant, state: tuple) -> None:
    rows, cols = shape[0], int(torch.Size(shape[1:]).numel())
    per_scale = {"tensor": (1, 1), "channel": (rows, 1), "group": (rows, cols // config.group_size)}
    expected = ((rows, cols), per_scale[config.granularity], per_scale[config.granularity])
    for tensor, want, what in zip(state, expected, ("codes", "scales", "zero_points"), strict=True):
        if tensor is not None and tuple(tensor.shape) != want:
            raise ValueError(f"{name}.{what} has shape {tuple(tensor.shape)}, expected {want}")
    dtype = torch.float16 if config.bits == 16 else torch.int8 if config.symmetric else torch.uint8
    if state[0].dtype != dtype:
        raise ValueError(f"{name}.codes is {state[0].dtype}, expected {dtype}")
