"""`compress_(model, plan)`: apply a plan in place; the profiler then sees the new storage."""

from __future__ import annotations

import dataclasses
import importlib
from collections import defaultdict

import torch

from weightwise.compress.configs import Quant
from weightwise.compress.modules import HANDLERS, Handler
from weightwise.compress.plan import Plan
from weightwise.data import Manifest
from weightwise.errors import InputError
from weightwise.evaluate.runtime import release_freed_memory
from weightwise.models.runtime import apply_runtime


class CompressContext:
    """What handlers may need beyond the network: calibration inputs (computed on first use) and,
    for csp pruning's fine-tuning form, transcribed training audio with its step count and Adam
    learning rate (`finetune_steps` 0 = the post-training form)."""

    def __init__(
        self,
        model,
        calib: Manifest | None,
        train: Manifest | None = None,
        finetune_steps: int = 0,
        finetune_lr: float = 1e-5,
        cache_hessians: bool = False,
    ):
        self.model, self.calib = model, calib
        self.train, self.finetune_steps, self.finetune_lr = train, finetune_steps, finetune_lr
        self._inputs: dict[str, torch.Tensor] = {}
        # the optimizer's sweep compresses one group at a time on the float network: one calibration
        # pass then serves every gptq candidate (exact there, since no other group is compressed)
        self.cache_hessians = cache_hessians
        self._hessians: dict = {}

    def hessians(self, names: list[str]) -> dict:
        """GPTQ input moments of Linear modules `names` on the calibration audio (`calib.Moments`)."""
        from weightwise.compress.calib import collect_hessians

        if not self.cache_hessians:
            return collect_hessians(self.model, self.calib, names)
        if any(n not in self._hessians for n in names):
            linears = [n for n, m in self.model.network.named_modules() if isinstance(m, torch.nn.Linear)]
            self._hessians.update(collect_hessians(self.model, self.calib, sorted(set(linears) | set(names))))
        return {n: self._hessians[n] for n in names if n in self._hessians}

    def inputs(self, names: list[str]) -> dict[str, torch.Tensor]:
        """Calibration inputs (rows, in_features) for Linear modules `names`.

        Collected from the *current* network, so modules compressed by earlier rules are seen
        as compressed (errors compound as they would in deployment).
        """
        if self.calib is None:
            raise InputError("this plan needs calibration audio (--calib MANIFEST) for csp pruning")
        missing = [n for n in names if n not in self._inputs]
        if missing:
            from weightwise.compress.calib import collect_inputs

            self._inputs.update(collect_inputs(self.model, self.calib, missing))
        silent = [n for n in names if n not in self._inputs]
        if silent:
            raise InputError(f"{silent[0]}: saw no input on the calibration audio ({self.calib.source})")
        return {n: self._inputs[n] for n in names}


def compress_(
    model,
    plan: Plan,
    calib: Manifest | None = None,
    train: Manifest | None = None,
    finetune_steps: int = 0,
    finetune_lr: float = 1e-5,
    pack: bool = False,
    handlers: dict[type, Handler] | None = None,
) -> None:
    """Compress `model` (a `WhisperASR`) in place following `plan`; returns None.

    Rules run in order; each handler receives every module its rule claimed (first match wins).
    `calib`: audio for post-training csp pruning. `train` (transcribed) with `finetune_steps` > 0:
    csp rules fine-tune instead (`weightwise.compress.finetune`, Adam at `finetune_lr`).
    `pack`: quantized layers run on packed kernels (`weightwise.compress.packed`): `quant` rules
    quantize each layer straight into packed form, other quantized modules (gptq) are packed after
    the rules, and the freed float weights go back to the system; the model then runs only (it
    cannot be saved: compress without `pack` to save). `handlers`: config type -> handler, used
    instead of the registered ones (a plan's GPTQ and screen rules loaded from its state file).

    Example:
        >>> model = load_model("whisper-tiny.en")  # doctest: +SKIP
        >>> compress_(model, Plan.from_json("int8.json"))  # doctest: +SKIP
    """
    if model.info.precision != "fp32":
        raise InputError(f"compress a float32 model (got {model.info.precision}); quantize with the plan")
    for registering in ("gptq", "lowrank", "prune", "quantize", "screen", "share"):  # importing registers handlers
        importlib.import_module(f"weightwise.compress.{registering}")

    claimed = plan.resolve(model.network)
    groups: dict[int, list[str]] = defaultdict(list)
    for name, (index, _config) in claimed.items():
        groups[index].append(name)
    context = CompressContext(model, calib, train, finetune_steps, finetune_lr)
    packed = importlib.import_module("weightwise.compress.packed") if pack else None
    with torch.no_grad():
        for index in sorted(groups):
            config = plan.rules[index].config
            direct = packed and isinstance(config, Quant) and not finetune_steps  # fine-tuning backpropagates
            handler = packed.quantize_packed if direct else {**HANDLERS, **(handlers or {})}[type(config)]
            handler(model.network, groups[index], config, context)
        if packed:
            packed.pack_(model.network)
            release_freed_memory()
    apply_runtime(model, plan.runtime)  # after the rules: the hooks sit on the compressed modules
    model.info = dataclasses.replace(model.info, plan=plan.name or "plan")
    model.plan = plan
