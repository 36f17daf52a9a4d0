"""Base class of compressed modules: compute with the compressed weights, report true storage.

Every compressed module
- computes its forward pass from its compressed representation (simulated quantization is fine),
- reports what a deployment stores via ``weightwise_storage()`` (the profiler reads it), and MACs
  via ``weightwise_macs(input, output)`` when they differ from a dense layer's,
- can be rebuilt empty from ``spec()`` (JSON-able) so a saved state dict reloads bit-identically.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from weightwise.profile.storage import TensorStorage

MODULE_TYPES: dict[str, type[CompressedModule]] = {}


def register_module(cls: type[CompressedModule]) -> type[CompressedModule]:
    """Class decorator: make `cls` rebuildable by its `kind` when loading a saved model."""
    MODULE_TYPES[cls.kind] = cls
    return cls


class CompressedModule(torch.nn.Module):
    kind = "compressed"

    def spec(self) -> dict[str, Any]:
        """Constructor arguments (JSON-able) that rebuild an empty module of the same shapes."""
        raise NotImplementedError

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> CompressedModule:
        return cls(**spec)

    def weightwise_storage(self) -> dict[str, TensorStorage]:
        raise NotImplementedError


def rebuild(kind: str, spec: dict[str, Any]) -> CompressedModule:
    if kind not in MODULE_TYPES:
        raise KeyError(f"unknown compressed module kind {kind!r}")
    return MODULE_TYPES[kind].from_spec(spec)


def replace_module(network: torch.nn.Module, name: str, module: torch.nn.Module) -> None:
    """Put `module` at dotted `name` inside `network`."""
    parent_name, _, child = name.rpartition(".")
    parent = network.get_submodule(parent_name) if parent_name else network
    setattr(parent, child, module)


# handler(network, module names claimed by one rule, config, context) -> None, registered per config type
Handler = Callable[[torch.nn.Module, list[str], Any, Any], None]
HANDLERS: dict[type, Handler] = {}


def register_handler(config_type: type) -> Callable[[Handler], Handler]:
    def decorate(fn: Handler) -> Handler:
        HANDLERS[config_type] = fn
        return fn

    return decorate
