"""`WeightOpModule`: the base of quantized and pruned modules, and helpers for replacing modules.

The replaced module's op (linear, conv1d, embedding) runs with a float weight
rebuilt from the compressed state and cached in the non-persistent buffer ``weight``.

Tied weights: when a rule claims every module sharing one Parameter (Whisper's
``model.decoder.embed_tokens`` and ``proj_out``), the table is compressed once and all the new
modules hold the *same* Parameter objects (one storage key, counted once by the profiler). When a
rule claims only one of them, the other keeps the original float weight: the pair is untied.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from weightwise.compress.modules import CompressedModule, replace_module
from weightwise.errors import InputError
from weightwise.profile.storage import TensorStorage, dense_storage


def op_of(module: nn.Module, name: str) -> tuple[str, dict[str, Any]]:
    """(op, op_args) that reproduce `module`'s forward from a weight tensor."""
    if isinstance(module, nn.Linear):
        return "linear", {}
    if isinstance(module, nn.Conv1d):
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise InputError(f"{name}: only zero-padded Conv1d with integer padding can be compressed")
        return "conv1d", {
            "stride": module.stride[0],
            "padding": module.padding[0],
            "dilation": module.dilation[0],
            "groups": module.groups,
        }
    if isinstance(module, nn.Embedding):
        if type(module) is not nn.Embedding or module.max_norm is not None:
            raise InputError(f"{name}: embedding type {type(module).__name__} (or max_norm) not supported")
        return "embedding", {"padding_idx": module.padding_idx}
    raise InputError(f"{name}: {type(module).__name__} is not a Linear, Conv1d or Embedding module")


def flat_weight(module: nn.Module) -> torch.Tensor:
    """The weight as (output channels or table rows, input elements); conv: (out, in/groups*k)."""
    return module.weight.detach().float().reshape(module.weight.shape[0], -1)


class WeightOpModule(CompressedModule):
    """Base: the replaced module's op, computed with `dense_weight()` rebuilt from compressed state.

    Subclasses register their state as Parameters (requires_grad=False, so `.to()` keeps tied
    modules sharing them) and implement `spec`, `weightwise_storage`, `dense_weight()` (rows, cols),
    `dense_bias()` (rows,) or None, and `load_bias(original dense bias)`. Call `refresh()` after
    changing state (a state-dict load does). `tie`: the module whose state this one shares.
    """

    def __init__(self, op: str, shape: list[int], op_args: dict[str, Any] | None = None, tie: str | None = None):
        super().__init__()
        self.op, self.shape, self.op_args, self.tie = op, tuple(shape), dict(op_args or {}), tie
        self.register_buffer("weight", torch.zeros(self.shape), persistent=False)
        self.register_buffer("effective_bias", None, persistent=False)
        self.register_load_state_dict_post_hook(_refresh_after_load)
        set_op_attributes(self)

    def base_spec(self) -> dict[str, Any]:
        return {"op": self.op, "shape": list(self.shape), "op_args": dict(self.op_args), "tie": self.tie}

    def config_spec(self) -> dict[str, Any]:
        """`spec()` of a module built from its op, a bias flag and the fields of its frozen `config`."""
        return {**self.base_spec(), "bias": getattr(self, "bias", None) is not None, **dataclasses.asdict(self.config)}

    def load_bias(self, bias: torch.Tensor | None) -> None:
        """Default: the original dense bias, kept in fp32 (subclasses with other layouts override)."""
        if getattr(self, "bias", None) is not None and bias is not None:
            self.bias.copy_(bias.detach().float())

    def dense_bias(self) -> torch.Tensor | None:
        return getattr(self, "bias", None)

    @torch.no_grad()
    def refresh(self) -> None:
        """Rebuild the cached float weight (and bias) from the compressed state."""
        weight = self.dense_weight().reshape(self.shape).to(self.weight.dtype)
        if self.weight.shape == weight.shape and self.weight.device == weight.device:
            self.weight.copy_(weight)  # in place: tied modules share this buffer
        else:
            self._buffers["weight"] = weight
        bias = self.dense_bias()
        self._buffers["effective_bias"] = None if bias is None else bias.detach()

    def share_state(self, owner: WeightOpModule) -> None:
        """Use `owner`'s compressed state (its Parameter objects, bias excepted) as this one's."""
        for name, param in owner.named_parameters(recurse=False):
            if name != "bias":
                self._parameters[name] = param
        self._buffers["weight"] = owner._buffers["weight"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.op == "linear":
            return F.linear(x, self.weight, self.effective_bias)
        if self.op == "conv1d":
            return F.conv1d(x, self.weight, self.effective_bias, **self.op_args)
        return F.embedding(x, self.weight, self.padding_idx)

    def dense_macs(self, out: torch.Tensor) -> int:
        """MACs of the dense op for an output: one dot product of `cols` terms per element."""
        return out.numel() * self.cols if self.op in ("linear", "conv1d") else 0

    def weightwise_macs(self, inp: torch.Tensor | None, out: torch.Tensor) -> int:
        return self.dense_macs(out)

    def weightwise_bytes_read(
        self, name: str, storage: TensorStorage, inp: torch.Tensor | None, out: torch.Tensor
    ) -> int:
        """Bytes of stored tensor `name` one call reads: embeddings only the rows they return."""
        if name == "weight" and self.op == "embedding":
            return round(out.numel() * storage.bytes_per_element)
        return storage.nbytes

    def bias_storage(self) -> dict[str, TensorStorage]:
        bias = getattr(self, "bias", None)
        return {"bias": dense_storage(bias)} if isinstance(bias, torch.Tensor) else {}


def set_op_attributes(module: nn.Module) -> None:
    """`rows`, `cols` (the 2-D layout compression works on) and the replaced module's attributes,
    from `module.op`, `module.shape` and `module.op_args`."""
    rows, flat = module.shape[0], math.prod(module.shape[1:])
    module.rows, module.cols = rows, flat
    if module.op == "linear":
        module.out_features, module.in_features = rows, flat
    elif module.op == "conv1d":  # nn.Conv1d's attributes (transformers reads conv1.stride)
        args = module.op_args
        module.out_channels, module.kernel_size, module.groups = rows, module.shape[2:], args["groups"]
        module.in_channels = module.shape[1] * module.groups
        module.stride, module.padding, module.dilation = ((args[k],) for k in ("stride", "padding", "dilation"))
    else:
        module.num_embeddings, module.embedding_dim = rows, flat
        module.padding_idx = module.op_args.get("padding_idx")


def _refresh_after_load(module: WeightOpModule, _keys: Any) -> None:  # load_state_dict post-hook
    module.refresh()


def frozen(tensor: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(tensor, requires_grad=False)


def tied_groups(network: nn.Module, names: list[str]) -> list[list[str]]:
    """`names` grouped by shared weight Parameter (tied weights), in first-seen order."""
    groups: dict[int, list[str]] = {}
    for name in names:
        groups.setdefault(id(network.get_submodule(name).weight), []).append(name)
    return list(groups.values())


def replace_group(network: nn.Module, group: list[str], build: Callable[[nn.Module, str], WeightOpModule]) -> None:
    """Compress the first module of a tied group with `build`; the rest share its state."""
    owner_name = group[0]
    owner = build(network.get_submodule(owner_name), owner_name)
    replace_module(network, owner_name, owner)
    for name in group[1:]:
        original = network.get_submodule(name)
        op, op_args = op_of(original, name)
        spec = {
            **owner.spec(),
            "op": op,
            "op_args": op_args,
            "tie": owner_name,
            "bias": getattr(original, "bias", None) is not None,
        }
        partner = type(owner).from_spec(spec)
        partner.share_state(owner)
        partner.load_bias(getattr(original, "bias", None))
        partner.refresh()
        replace_module(network, name, partner)


# -- quantization -------------------------------------------------------------------------------
