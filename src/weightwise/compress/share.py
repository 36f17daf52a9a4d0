"""Weight sharing across modules (paper 4, MISSION.md §4): one stored tensor, several users.

A `Share` rule groups ALL the modules it claims (at least two Linear modules of one shape):

- ``full``: every module uses one weight, the group's mean, and keeps its own bias
  (`SharedLinear`). Paper 4 trains with sharing from the start; we only offer the post-training
  form (sharing the layers of an already trained model), which costs more accuracy.
- ``lowrank_u``: W_i ~= U V_i. U (out x r, orthonormal columns) = top-r left singular vectors of
  [W_1 ... W_k] (out x k*in), V_i = U^T W_i (least squares for orthonormal U). This minimizes
  sum_i ||W_i - U V_i||_F^2 (Eckart-Young on the concatenation).
- ``lowrank_v``: W_i ~= U_i V. V (r x in, orthonormal rows) = top-r right singular vectors of
  [W_1; ...; W_k] (k*out x in), U_i = W_i V^T.

Each module is its own `CompressedModule` that references the ONE shared Parameter object, so
the profiler (which dedups by storage key) stores it once. After rebuilding modules from their
specs, call `tie_shared(network)` before loading the saved state to restore the sharing.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F

from weightwise.compress.configs import Share
from weightwise.compress.lowrank import (
    LowRankLinear,
    LowRankWarning,
    dense_equivalent,
    factor_storage,
    principal_subspace,
)
from weightwise.compress.modules import CompressedModule, register_handler, register_module, replace_module
from weightwise.errors import InputError
from weightwise.profile.storage import TensorStorage, dense_storage, module_storage


@register_module
class SharedLinear(CompressedModule):
    """A Linear whose weight Parameter is shared with other modules; the bias is its own."""

    kind = "shared_linear"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, tied: dict[str, str] | None = None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = torch.nn.Parameter(torch.empty(out_features, in_features))
        self.register_parameter("bias", torch.nn.Parameter(torch.empty(out_features)) if bias else None)
        self.weightwise_tied = dict(tied or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def spec(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
            "tied": dict(self.weightwise_tied),
        }

    def weightwise_storage(self) -> dict[str, TensorStorage]:
        out = {"weight": factor_storage(self.weight, "shared")}
        if self.bias is not None:
            out["bias"] = dense_storage(self.bias)
        return out

    def weightwise_macs(self, inp: torch.Tensor | None, out: torch.Tensor) -> int:
        return out.numel() * self.in_features

    def weightwise_dense(self) -> dict[Any, int]:
        """This module's own dense weight (one per user: what sharing saves) and its bias."""
        return dense_equivalent(("module", id(self)), self.out_features * self.in_features, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, shared"


@register_module
class SharedLowRankLinear(LowRankLinear):
    """W ~= U V where the factor named by `shared` ("u" or "v") is one Parameter across a group."""

    kind = "shared_lowrank_linear"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        shared: str = "u",
        bias: bool = True,
        tied: dict[str, str] | None = None,
    ):
        super().__init__(in_features, out_features, rank, bias, tied)
        if shared not in ("u", "v"):
            raise ValueError(f"shared must be 'u' or 'v', got {shared!r}")
        self.shared = shared
        setattr(self, f"{shared}_format", f"shared-lowrank-{shared}")

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "shared": self.shared}

    def weightwise_dense(self) -> dict[Any, int]:
        return dense_equivalent(("module", id(self)), self.out_features * self.in_features, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, shared={self.shared}"


# -- sharing and storage -------------------------------------------------------------------------
def tie_shared(network: torch.nn.Module) -> None:
    """Point every module's tied parameters (``weightwise_tied``: name -> dotted owner parameter)
    at the owner's Parameter object; call after rebuilding modules from specs, before loading.
    (`weightwise.compress.io.retie` restores the same ties from a saved manifest's groups; this
    needs the module specs only.)

    Raises:
        InputError: the owner parameter is missing or has another shape.
    """
    for name, module in network.named_modules():
        for pname, target in getattr(module, "weightwise_tied", {}).items():
            try:
                param = network.get_parameter(target)
            except AttributeError:
                raise InputError(f"{name}.{pname}: shares {target}, which the network lacks") from None
            if param.shape != getattr(module, pname).shape:
                raise InputError(
                    f"{name}.{pname}: shape {tuple(getattr(module, pname).shape)} differs from "
                    f"the shared {target} {tuple(param.shape)}"
                )
            setattr(module, pname, param)


def unique_storage(network: torch.nn.Module) -> dict[str, int]:
    """Stored parameters and bytes counted once per storage key, and the dense equivalent.

    Returns:
        unique_params: elements stored (shared/tied tensors once; factors, not the weights).
        unique_bytes: bytes stored (quantization metadata etc. included, per `module_storage`).
        params_if_dense: elements of the same network with every weight dense and each shared
            weight stored once per user (weights tied in the base model, and a tied pair factored
            once, stay counted once): an uncompressed model gives unique_params.
    """
    stored: dict[Any, TensorStorage] = {}
    dense: dict[Any, int] = {}
    for _name, module in network.named_modules():
        storage = module_storage(module)
        for st in storage.values():
            stored.setdefault(st.key, st)
        custom = getattr(module, "weightwise_dense", None)
        dense.update(custom() if callable(custom) else {st.key: st.numel for st in storage.values()})
    return {
        "unique_params": sum(st.numel for st in stored.values()),
        "unique_bytes": sum(st.nbytes for st in stored.values()),
        "params_if_dense": sum(dense.values()),
    }


# -- handler ---------------------------------------------------------------------------------------
def _check_group(modules: dict[str, torch.nn.Module]) -> None:
    names = ", ".join(modules)
    if len(modules) < 2:
        raise InputError(f"{names}: share needs at least 2 Linear modules in one rule, got {len(modules)}")
    bad = [n for n, m in modules.items() if not isinstance(m, torch.nn.Linear)]
    if bad:
        raise InputError(f"{', '.join(bad)}: share supports Linear modules only")
    shapes = {tuple(m.weight.shape) for m in modules.values()}
    if len(shapes) > 1:
        listed = ", ".join(f"{n} {m.out_features}x{m.in_features}" for n, m in modules.items())
        raise InputError(f"share needs Linear modules of one shape, got {listed}")


def shared_factors(weights: list[torch.Tensor], what: str, rank: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(shared factor, per-module factors) in float64 for ``lowrank_u`` or ``lowrank_v``.

    lowrank_u: shared U (out x r) and V_i = U^T W_i (r x in).
    lowrank_v: shared V (r x in) and U_i = W_i V^T (out x r).
    """
    ws = [w.detach().double() for w in weights]
    if what == "lowrank_u":
        _energies, basis = principal_subspace(sum(w @ w.T for w in ws))  # Gram of [W_1 ... W_k]
        u = basis[:, :rank]
        return u, [u.T @ w for w in ws]
    _energies, basis = principal_subspace(sum(w.T @ w for w in ws))  # Gram of [W_1; ...; W_k]
    v = basis[:, :rank].T
    return v, [w @ v.T for w in ws]


def _warn_if_larger(names: list[str], what: str, rank: int, out_f: int, in_f: int) -> None:
    k = len(names)
    stored = out_f * rank + k * rank * in_f if what == "lowrank_u" else k * out_f * rank + rank * in_f
    if stored >= k * out_f * in_f:
        warnings.warn(
            f"{', '.join(names)}: share {what} rank {rank} stores {stored} elements, not fewer "
            f"than the dense {k} x {out_f}x{in_f}",
            LowRankWarning,
            stacklevel=3,
        )


def _own_bias(new: torch.nn.Module, old: torch.nn.Linear) -> None:
    if old.bias is not None:
        new.bias = torch.nn.Parameter(old.bias.detach().clone())


def _share_full(network: torch.nn.Module, modules: dict[str, torch.nn.Linear]) -> None:
    owner, first = next(iter(modules.items()))
    mean = sum(m.weight.detach().double() for m in modules.values()) / len(modules)
    weight = torch.nn.Parameter(mean.to(first.weight.dtype).contiguous())
    for name, old in modules.items():
        tied = {} if name == owner else {"weight": f"{owner}.weight"}
        new = SharedLinear(old.in_features, old.out_features, old.bias is not None, tied)
        new.weight = weight
        _own_bias(new, old)
        replace_module(network, name, new)


def _share_lowrank(network: torch.nn.Module, modules: dict[str, torch.nn.Linear], what: str, rank: int) -> None:
    owner, first = next(iter(modules.items()))
    out_f, in_f = first.weight.shape
    limit = out_f if what == "lowrank_u" else in_f  # columns of the shared basis
    if rank > limit:
        raise InputError(
            f"{', '.join(modules)}: share {what} rank {rank} is above the maximum rank {limit} "
            f"(the {'out' if what == 'lowrank_u' else 'in'} features of {out_f}x{in_f} weights)"
        )
    _warn_if_larger(list(modules), what, rank, out_f, in_f)
    shared, own = shared_factors([m.weight for m in modules.values()], what, rank)
    side = "u" if what == "lowrank_u" else "v"
    dtype = first.weight.dtype
    common = torch.nn.Parameter(shared.to(dtype).contiguous())
    for (name, old), mine in zip(modules.items(), own, strict=False):
        tied = {} if name == owner else {side: f"{owner}.{side}"}
        new = SharedLowRankLinear(in_f, out_f, rank, side, old.bias is not None, tied)
        mine = torch.nn.Parameter(mine.to(dtype).contiguous())
        new.set_factors(*((common, mine) if side == "u" else (mine, common)))
        _own_bias(new, old)
        replace_module(network, name, new)


@register_handler(Share)
def share_(network: torch.nn.Module, names: list[str], config: Share, context: Any = None) -> None:
    """Make all the modules one rule claims share weights (``config.what``), in place.

    Raises:
        InputError: fewer than 2 modules, a non-Linear module, or shapes that differ.
    """
    modules = {n: network.get_submodule(n) for n in names}
    _check_group(modules)
    if config.what == "full":
        _share_full(network, modules)
    else:
        _share_lowrank(network, modules, config.what, config.rank)
