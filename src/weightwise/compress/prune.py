"""Weight pruning (`Prune`): unstructured, N:M and output-channel sparsity, by magnitude or CSP.

Conventions (the 2-D layout is (output channels or table rows, input elements); conv flattens
(out, in/groups * kernel)):
- unstructured: exactly floor(sparsity * inputs) weights zeroed in *every row* (row-wise, so each
  output keeps the same number of inputs and the count is exact);
- N:M (pattern "N:M"): the N largest of every M consecutive inputs kept; `sparsity` is ignored
  (it is 1 - N/M by construction); InputError when M does not divide the inputs;
- channel: exactly floor(sparsity * rows) whole output channels dropped; the module still returns
  every channel, zeros (bias included) for the dropped ones.
Method ``magnitude`` keeps the largest |w| (channels: largest L2 norm); ``csp`` (Linear only, see
`weightwise.compress.csp`) uses calibration inputs (channels: the largest calibrated output
energy w_i^T G w_i); other module types fall back to magnitude with a warning. Calibration
inputs of all a rule's CSP layers are collected in one pass before any of them is pruned. Given
transcribed training audio and fine-tuning steps (`CompressContext.train`), ``csp`` fine-tunes
instead (`weightwise.compress.finetune`, unstructured only).
MACs reported: dense x density, assuming sparse kernels skip zeros (exact for channels).
Tied weights follow `weightwise.compress.quantize`: pruned once when the rule claims every user.
"""

from __future__ import annotations

import math
import warnings
from functools import partial
from typing import Any

import torch
from torch import nn

from weightwise.compress import csp
from weightwise.compress.configs import Prune
from weightwise.compress.finetune import csp_finetune_
from weightwise.compress.masks import nm_mask, topk_mask
from weightwise.compress.modules import register_handler, register_module
from weightwise.compress.weightop import WeightOpModule, flat_weight, frozen, op_of, replace_group, tied_groups
from weightwise.errors import InputError
from weightwise.profile.storage import TensorStorage


def kept_count(config: Prune, rows: int, cols: int) -> int:
    """Weights kept per row (unstructured, N:M) or channels kept (channel)."""
    if config.nm is not None:
        n, m = config.nm
        return cols // m * n
    if config.pattern == "channel":
        return rows - math.floor(config.sparsity * rows)
    return cols - math.floor(config.sparsity * cols)


def magnitude_mask(weight: torch.Tensor, config: Prune) -> torch.Tensor:
    """Bool keep-mask (rows, cols) of the largest |w|: per row, per N:M group, or per channel."""
    rows, cols = weight.shape
    keep = kept_count(config, rows, cols)
    if config.nm is not None:
        return nm_mask(weight, *config.nm)
    if config.pattern == "channel":
        channels = torch.topk(weight.norm(dim=1), keep).indices
        return torch.zeros(rows, dtype=torch.bool).index_fill_(0, channels, True)[:, None].expand(rows, cols)
    return topk_mask(weight.abs(), keep)


@register_module
class SparseModule(WeightOpModule):
    """A Linear / Conv1d / Embedding whose weight is stored sparse (see `Prune`).

    State, by pattern: unstructured ``values`` (rows, keep) + ``indices`` (rows, keep) column of
    each value (int16, int32 past 32767 inputs); N:M ``values`` (rows, cols/M*N) + ``indices``
    position inside its group (int8); channel ``values`` (keep, cols) + ``channels`` (keep,) int32
    kept channel numbers + ``bias`` of kept channels. Values are fp32.
    """

    kind = "sparse"

    def __init__(
        self,
        op: str,
        shape: list[int],
        op_args: dict[str, Any] | None = None,
        tie: str | None = None,
        bias: bool = False,
        pattern: str = "unstructured",
        sparsity: float = 0.5,
    ):
        super().__init__(op, shape, op_args, tie)
        self.config = Prune(sparsity, pattern)
        self.keep = kept_count(self.config, self.rows, self.cols)
        if pattern == "channel":
            self.values = frozen(torch.zeros(self.keep, self.cols))
            self.channels = frozen(torch.arange(self.keep, dtype=torch.int32))
            self.bias = frozen(torch.zeros(self.keep)) if bias else None
            return
        index_dtype = torch.int8 if self.config.nm else torch.int16 if self.cols <= 32767 else torch.int32
        self.values = frozen(torch.zeros(self.rows, self.keep))
        self.indices = frozen(torch.zeros(self.rows, self.keep, dtype=index_dtype))
        self.bias = frozen(torch.zeros(self.rows)) if bias else None

    def spec(self) -> dict[str, Any]:
        return {
            **self.base_spec(),
            "bias": self.bias is not None,
            "pattern": self.config.pattern,
            "sparsity": self.config.sparsity,
        }

    @classmethod
    def from_mask(
        cls, module: nn.Module, name: str, config: Prune, mask: torch.Tensor, weight: torch.Tensor | None = None
    ) -> SparseModule:
        """Store `weight` (default: the module's own) where bool `mask` (rows, cols) is True.

        The mask must keep exactly `kept_count` entries per row (unstructured, N:M: per group)
        or whole rows (channel).
        """
        op, op_args = op_of(module, name)
        weight = flat_weight(module) if weight is None else weight.float()
        new = cls(
            op,
            list(module.weight.shape),
            op_args,
            None,
            getattr(module, "bias", None) is not None,
            config.pattern,
            config.sparsity,
        )
        if config.pattern == "channel":
            channels = mask.any(dim=1).nonzero()[:, 0]
            new.channels.copy_(channels)
            new.values.copy_(weight[channels])
        else:
            columns = mask.nonzero()[:, 1].reshape(new.rows, new.keep)  # row-major: sorted per row
            new.values.copy_(weight.gather(1, columns))
            new.indices.copy_(columns % config.nm[1] if config.nm else columns)
        new.load_bias(getattr(module, "bias", None))
        new.refresh()
        return new

    def load_bias(self, bias: torch.Tensor | None) -> None:
        if self.bias is None or bias is None:
            return
        bias = bias.detach().float()
        self.bias.copy_(bias[self.channels.long()] if self.config.pattern == "channel" else bias)

    def columns(self) -> torch.Tensor:
        """Column (input element) of every stored value, (rows, keep) int64."""
        indices = self.indices.long()
        if self.config.nm is None:
            return indices
        n, m = self.config.nm
        groups = torch.arange(self.cols // m, device=indices.device).repeat_interleave(n)
        return groups * m + indices

    def dense_weight(self) -> torch.Tensor:
        dense = torch.zeros(self.rows, self.cols, device=self.values.device)
        if self.config.pattern == "channel":
            return dense.index_copy_(0, self.channels.long(), self.values)
        return dense.scatter_(1, self.columns(), self.values)

    def dense_bias(self) -> torch.Tensor | None:
        if self.bias is None or self.config.pattern != "channel":
            return self.bias
        return torch.zeros(self.rows, device=self.bias.device).index_copy_(0, self.channels.long(), self.bias)

    @property
    def density(self) -> float:
        """Fraction of the weights stored (nonzero)."""
        return self.keep / (self.rows if self.config.pattern == "channel" else self.cols)

    def weightwise_macs(self, inp: torch.Tensor | None, out: torch.Tensor) -> int:
        """Dense MACs x density: assumes sparse kernels skip the zeros (exact for channels)."""
        return round(self.dense_macs(out) * self.density)

    def weightwise_storage(self) -> dict[str, TensorStorage]:
        """fp32 values + indices: CSR (2 or 4 B column per value, 4 B row pointers + 4), N:M
        (ceil(log2 C(M, N)) bits per group of M), channel (4 B index per kept channel)."""
        config, nnz = self.config, self.values.numel()
        if config.pattern == "channel":
            nbytes, fmt = 4 * nnz + 4 * self.keep, "channel"
        elif config.nm is not None:
            n, m = config.nm
            index_bits = self.rows * (self.cols // m) * math.ceil(math.log2(math.comb(m, n)))
            nbytes, fmt = 4 * nnz + math.ceil(index_bits / 8), f"{n}:{m}"
        else:
            column_bytes = 2 if self.cols < 65536 else 4
            nbytes, fmt = (4 + column_bytes) * nnz + 4 * self.rows + 4, "csr"
        weight = TensorStorage(self.shape, "fp32", nbytes, fmt, id(self.values))
        return {"weight": weight, **self.bias_storage()}


@register_handler(Prune)
def prune_handler(network: nn.Module, names: list[str], config: Prune, context: Any) -> None:
    """Replace every named module by a `SparseModule` (tied modules share one sparse table)."""
    groups = tied_groups(network, names)
    for group in groups:
        _check_shape(network.get_submodule(group[0]), group[0], config)
    csp_groups = [g for g in groups if config.method == "csp" and _csp_applies(network, g, config)]
    if csp_groups and getattr(context, "train", None) is not None and context.finetune_steps > 0:
        _finetune(network, groups, csp_groups, config, context)
        return
    inputs = context.inputs([g[0] for g in csp_groups]) if csp_groups else {}
    for group in groups:
        if group in csp_groups:
            build = partial(_csp_module, config=config, inputs=inputs[group[0]])
        else:
            build = lambda module, name: SparseModule.from_mask(  # noqa: E731
                module, name, config, magnitude_mask(flat_weight(module), config)
            )
        replace_group(network, group, build)


def _finetune(
    network: nn.Module, groups: list[list[str]], csp_groups: list[list[str]], config: Prune, context: Any
) -> None:
    """CSP's fine-tuning form (`weightwise.compress.finetune`): train all the rule's CSP layers
    together, then store each sparsified weight; the other groups are pruned by magnitude."""
    csp_finetune_(
        context.model, [g[0] for g in csp_groups], config, context.train, context.finetune_steps, context.finetune_lr
    )
    for group in groups:  # fine-tuned weights already hold exactly floor(s * in) zeros per row
        replace_group(
            network,
            group,
            lambda module, name: SparseModule.from_mask(
                module, name, config, magnitude_mask(flat_weight(module), config)
            ),
        )


def _check_shape(module: nn.Module, name: str, config: Prune) -> None:
    op_of(module, name)
    cols = flat_weight(module).shape[1]
    if config.nm is not None and cols % config.nm[1]:
        raise InputError(
            f"{name}: {cols} input elements are not a multiple of M={config.nm[1]} for pattern {config.pattern}"
        )


def _csp_applies(network: nn.Module, group: list[str], config: Prune) -> bool:
    """CSP needs a Linear's inputs; other types (or tied groups with one) fall back to magnitude."""
    others = [n for n in group if not isinstance(network.get_submodule(n), nn.Linear)]
    if others:
        warnings.warn(
            f"prune method csp applies to Linear layers only: {', '.join(group)} pruned by magnitude", stacklevel=3
        )
    return not others


def _csp_module(module: nn.Linear, name: str, config: Prune, inputs: torch.Tensor) -> SparseModule:
    weight = flat_weight(module)
    if inputs.shape[1] != weight.shape[1]:
        raise InputError(f"{name}: calibration inputs have {inputs.shape[1]} features, expected {weight.shape[1]}")
    gram = csp.gram(inputs)
    if config.pattern == "channel":
        mask, refit = csp.channel_mask(weight, gram, kept_count(config, *weight.shape)), weight
    else:
        mask, refit = csp.csp_prune(weight, gram, config.sparsity, config.nm)
    return SparseModule.from_mask(module, name, config, mask, refit)
