"""Low-rank factorization W (out x in) ~= U (out x r) @ V (r x in) by truncated SVD (MISSION.md §4).

Storage drops from out*in to r*(out+in) elements, and so do the MACs per row; the break-even rank
is out*in/(out+in) (a larger rank stores more than the dense weight: allowed, with a warning;
a rank above min(out, in) is an error).

The factors are the best rank-r approximation (Eckart-Young), W = L S R^T being the SVD: W is
projected onto its top-r singular subspace on its smaller side. Tall W (out >= in): v = R_r^T
(orthonormal rows), u = W R_r = L_r S_r. Wide W: u = L_r (orthonormal columns), v = L_r^T W =
S_r R_r^T. The subspace comes from the eigenvectors of the small float64 Gram matrix (W^T W or
W W^T): ~1 s instead of ~9 s for a full SVD of the 51864 x 384 token table on 2 CPU cores, and no
division by singular values, so rank-deficient weights stay finite. (The Gram squares the
condition number; in float64 the top-r subspace of fp32 weights is still accurate.)

Tied weights: modules of one rule that share one weight Parameter (Whisper's
``model.decoder.embed_tokens`` and ``proj_out``) are factored ONCE and the new modules reference
the same ``u``/``v`` Parameters (table ~= u @ v; lookup = u[ids] @ v; projection = x @ v^T @ u^T),
so the factors are stored once. When a rule claims only one of them, that one is factored and the
other keeps the original full table: the tie is broken (both copies are then stored).

Post-training accuracy (whisper-tiny.en, 4 bundled samples, dense WER 0.04): decoder fc1 at rank
256 of 384 keeps WER 0; the tied token table is fragile, mostly through the output projection:
rank 256 -> repetition loops (WER ~58), 320 -> 0.43, 336 -> 0.22, 352 -> 0.09.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import torch
import torch.nn.functional as F

from weightwise.compress.configs import LowRank
from weightwise.compress.modules import CompressedModule, register_handler, register_module, replace_module
from weightwise.errors import InputError
from weightwise.profile.storage import TensorStorage, dense_storage


class LowRankWarning(UserWarning):
    """A factorization stores more than the dense weight (rank above out*in/(out+in))."""


# -- linear algebra -----------------------------------------------------------------------------
def principal_subspace(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(energies, basis) of a symmetric PSD Gram matrix, largest energy first.

    energies[i] = sigma_i^2 (squared singular values of the matrix whose Gram this is), clamped
    at 0; basis[:, i] is the matching singular vector (float64).
    """
    energies, basis = torch.linalg.eigh(gram.double())
    return energies.flip(0).clamp_min(0.0), basis.flip(1)


def choose_rank(energies: torch.Tensor, config: LowRank) -> int:
    """`config.rank`, or the smallest r whose squared singular values sum to at least
    `energy_fraction` of the total (at most the number of singular values)."""
    if config.rank is not None:
        return config.rank
    cumulative = torch.cumsum(energies, 0)
    if cumulative[-1] <= 0:
        return 1
    first = int(torch.searchsorted(cumulative, config.energy_fraction * cumulative[-1]))
    return min(first + 1, energies.numel())


def lowrank_factors(weight: torch.Tensor, config: LowRank, name: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """Best rank-r factors (u: out x r, v: r x in) of `weight` (out x in), in `weight`'s dtype.

    Raises:
        InputError: `config.rank` is above min(out, in), the largest rank `weight` has.
    """
    w = weight.detach().double()
    if config.rank is not None and config.rank > min(w.shape):
        raise InputError(
            f"{name or 'weight'}: lowrank rank {config.rank} is above the layer's maximum rank "
            f"{min(w.shape)} (a {w.shape[0]}x{w.shape[1]} weight)"
        )
    tall = w.shape[0] >= w.shape[1]
    energies, basis = principal_subspace(w.T @ w if tall else w @ w.T)
    rank = choose_rank(energies, config)
    out_f, in_f = w.shape
    if rank * (out_f + in_f) >= out_f * in_f:
        warnings.warn(
            f"{name or 'weight'}: rank {rank} stores {rank * (out_f + in_f)} elements, not fewer "
            f"than the dense {out_f}x{in_f}",
            LowRankWarning,
            stacklevel=3,
        )
    top = basis[:, :rank]
    u, v = (w @ top, top.T) if tall else (top, top.T @ w)
    return u.to(weight.dtype).contiguous(), v.to(weight.dtype).contiguous()


# -- modules -----------------------------------------------------------------------------------
def factor_storage(param: torch.Tensor, fmt: str) -> TensorStorage:
    """Dense storage of one factor, keyed by the Parameter (shared factors share the key)."""
    return dataclasses.replace(dense_storage(param), format=fmt)


def dense_equivalent(key: Any, weight_elements: int, bias: torch.Tensor | None) -> dict[Any, int]:
    """{key: elements of the dense weight, bias storage key: bias elements} for `unique_storage`."""
    out: dict[Any, int] = {key: weight_elements}
    if bias is not None:
        out[id(bias)] = bias.numel()
    return out


class _Factored(CompressedModule):
    """Holds ``u`` (out x r) and ``v`` (r x in); ``weightwise_tied`` maps a parameter name to the
    dotted name of the Parameter it shares (see `weightwise.compress.share.tie_shared`)."""

    u_format, v_format = "lowrank-u", "lowrank-v"

    def _init_factors(self, out_dim: int, in_dim: int, rank: int, tied: dict[str, str] | None) -> None:
        self.rank = rank
        self.u = torch.nn.Parameter(torch.empty(out_dim, rank))
        self.v = torch.nn.Parameter(torch.empty(rank, in_dim))
        self.weightwise_tied = dict(tied or {})

    def set_factors(self, u: torch.nn.Parameter, v: torch.nn.Parameter) -> None:
        """Use these Parameter objects (possibly shared with other modules) as the factors."""
        if u.shape != self.u.shape or v.shape != self.v.shape:
            raise ValueError(
                f"factor shapes {tuple(u.shape)}, {tuple(v.shape)} != {tuple(self.u.shape)}, {tuple(self.v.shape)}"
            )
        self.u, self.v = u, v

    def weightwise_dense(self) -> dict[Any, int]:
        """Elements of the dense weight these factors replace, keyed by the factor pair (tied
        modules replace one weight), plus the bias (see `share.unique_storage`)."""
        return dense_equivalent(
            ("lowrank", id(self.u), id(self.v)), self.u.shape[0] * self.v.shape[1], getattr(self, "bias", None)
        )


@register_module
class LowRankLinear(_Factored):
    """y = x V^T U^T + b: a Linear whose weight is stored as U (out x r) @ V (r x in).

    MACs per input row: r*in + r*out (vs out*in dense).
    """

    kind = "lowrank_linear"

    def __init__(
        self, in_features: int, out_features: int, rank: int, bias: bool = True, tied: dict[str, str] | None = None
    ):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._init_factors(out_features, in_features, rank, tied)
        self.register_parameter("bias", torch.nn.Parameter(torch.empty(out_features)) if bias else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.v), self.u, self.bias)

    def spec(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "rank": self.rank,
            "bias": self.bias is not None,
            "tied": dict(self.weightwise_tied),
        }

    def weightwise_storage(self) -> dict[str, TensorStorage]:
        out = {"u": factor_storage(self.u, self.u_format), "v": factor_storage(self.v, self.v_format)}
        if self.bias is not None:
            out["bias"] = dense_storage(self.bias)
        return out

    def weightwise_macs(self, inp: torch.Tensor | None, out: torch.Tensor) -> int:
        rows = out.numel() // self.out_features
        return rows * self.rank * (self.in_features + self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


@register_module
class LowRankEmbedding(_Factored):
    """Embedding whose table (num x dim) is stored as U (num x r) @ V (r x dim): lookup = U[ids] @ V.

    MACs per looked-up id: r*dim. Bytes read per call: the r-element rows of U returned plus all
    of V (see `weightwise_bytes_read`).
    """

    kind = "lowrank_embedding"

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        rank: int,
        padding_idx: int | None = None,
        tied: dict[str, str] | None = None,
    ):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        self._init_factors(num_embeddings, embedding_dim, rank, tied)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.u, self.padding_idx) @ self.v

    def spec(self) -> dict[str, Any]:
        return {
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
            "rank": self.rank,
            "padding_idx": self.padding_idx,
            "tied": dict(self.weightwise_tied),
        }

    def weightwise_storage(self) -> dict[str, TensorStorage]:
        return {"u": factor_storage(self.u, self.u_format), "v": factor_storage(self.v, self.v_format)}

    def weightwise_macs(self, inp: torch.Tensor | None, out: torch.Tensor) -> int:
        return out.numel() * self.rank

    def weightwise_bytes_read(
        self, name: str, storage: TensorStorage, inp: torch.Tensor | None, out: torch.Tensor
    ) -> int:
        """Bytes of parameter `name` one call reads: the looked-up rows of u, all of v."""
        if name == "u":
            return (out.numel() // self.embedding_dim) * self.rank * self.u.element_size()
        return storage.nbytes

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, rank={self.rank}"


# -- handler -----------------------------------------------------------------------------------
def _tied_groups(modules: dict[str, torch.nn.Module]) -> list[list[str]]:
    """Claimed names grouped by their weight Parameter (tied modules together), in claim order."""
    groups: dict[int, list[str]] = {}
    for name, module in modules.items():
        groups.setdefault(id(module.weight), []).append(name)
    return list(groups.values())


def _replacement(module: torch.nn.Module, rank: int, tied: dict[str, str]) -> _Factored:
    if isinstance(module, torch.nn.Embedding):
        return LowRankEmbedding(module.num_embeddings, module.embedding_dim, rank, module.padding_idx, tied)
    new = LowRankLinear(module.in_features, module.out_features, rank, module.bias is not None, tied)
    if module.bias is not None:
        new.bias = torch.nn.Parameter(module.bias.detach().clone())
    return new


def _check_modules(modules: dict[str, torch.nn.Module]) -> None:
    bad = [n for n, m in modules.items() if not isinstance(m, (torch.nn.Linear, torch.nn.Embedding))]
    if bad:
        raise InputError(f"{', '.join(bad)}: lowrank supports Linear and Embedding modules only")
    bad = [n for n, m in modules.items() if isinstance(m, torch.nn.Embedding) and (m.max_norm is not None or m.sparse)]
    if bad:
        raise InputError(f"{', '.join(bad)}: lowrank does not support Embedding with max_norm or sparse")


@register_handler(LowRank)
def lowrank_(network: torch.nn.Module, names: list[str], config: LowRank, context: Any = None) -> None:
    """Replace every claimed Linear/Embedding by its rank-r factorization, in place.

    Raises:
        InputError: a claimed module is not a Linear or an Embedding (e.g. Conv1d).
    """
    modules = {n: network.get_submodule(n) for n in names}
    _check_modules(modules)
    for group in _tied_groups(modules):
        owner = group[0]
        u, v = lowrank_factors(modules[owner].weight, config, " + ".join(group))
        u, v = torch.nn.Parameter(u), torch.nn.Parameter(v)
        for name in group:
            tied = {} if name == owner else {"u": f"{owner}.u", "v": f"{owner}.v"}
            new = _replacement(modules[name], u.shape[1], tied)
            new.set_factors(u, v)
            replace_module(network, name, new)
