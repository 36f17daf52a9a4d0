"""`load_model_with_plan`: load a model and compress it by a plan in one call (the CLI's `--plan`,
`--calib`, `--finetune` and the bench's plan cells both come here).

It lives in `compress`, not `models`: `models` sits below `compress` and never imports it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from weightwise.compress.api import compress_
from weightwise.compress.io import is_compressed_dir, load_compressed
from weightwise.compress.plan import Plan
from weightwise.data import Manifest, open_manifest
from weightwise.errors import InputError
from weightwise.models import WhisperASR, load_model
from weightwise.models.runtime import apply_runtime

__all__ = ["load_model_with_plan"]


def load_model_with_plan(
    name_or_path: str,
    precision: str = "fp32",
    cache_dir: str | Path | None = None,
    *,
    plan: Plan | str | os.PathLike | None = None,
    calib: Manifest | str | os.PathLike | None = None,
    train: Manifest | str | os.PathLike | None = None,
    finetune_steps: int = 0,
    finetune_lr: float = 1e-5,
    pack: bool = True,
) -> WhisperASR:
    """`load_model(name_or_path, precision, cache_dir)`, then `compress_` by `plan` when one is given
    (compressed at fp32; with `precision` fp16/bf16 its float tensors and activations then run at it).

    The cheap inputs are checked before the slow model load: the plan is parsed (a path) and the
    manifests are opened (a path, a folder or "samples", see `weightwise.data.open_manifest`).
    `calib` and `train` are used only with a plan.

    Args:
        plan: a `Plan` or a plan JSON file; None loads the model as it is.
        calib: calibration audio for csp pruning (no transcripts needed).
        train: transcribed audio on which csp rules fine-tune for `finetune_steps` steps (Adam at
            `finetune_lr`); 0 steps: the post-training form.
        pack: run the quantized Linear / Embedding / Conv1d layers on packed kernels
            (`weightwise.compress.packed`), each layer quantized straight into packed form; a
            folder `weightwise compress` wrote (no `plan`) is loaded packed too. False keeps the
            simulated modules a compressed model is saved from. Packing applies at fp32 (fp16/bf16
            runs cast the simulated modules' float tensors).

    Raises:
        InputError: a bad plan or manifest, `finetune_steps` without `train`, or what `load_model`
            and `compress_` raise.
    """
    if plan is None:
        if pack and precision == "fp32" and is_compressed_dir(Path(name_or_path).expanduser()):
            return load_compressed(Path(name_or_path).expanduser(), precision, cache_dir, pack=True)
        return load_model(name_or_path, precision=precision, cache_dir=cache_dir)
    label = f"plan {plan.name or 'plan'}" if isinstance(plan, Plan) else f"--plan {os.fspath(plan)}"
    if not isinstance(plan, Plan):
        plan = Plan.from_json(plan)
    from_state = plan.state is not None and calib is None and not finetune_steps
    if calib is None and plan.calib is not None and needs_calibration(plan) and not from_state:
        calib = plan.calib  # the manifest the plan was calibrated on, named in the plan file
    calib = _opened(calib)
    train = _opened(train)
    if finetune_steps and train is None:
        raise InputError("--finetune-steps needs transcribed training audio (--finetune MANIFEST)")
    if calib is None and not finetune_steps and needs_calibration(plan) and not from_state:
        raise InputError(
            f"{label} prunes with csp or quantizes with gptq, which needs calibration audio (--calib MANIFEST)"
        )
    if calib is not None and not needs_calibration(plan):
        raise InputError(f"--calib is used only by csp pruning and gptq plans, and {label} has neither")
    if precision not in ("fp32", "fp16", "bf16"):
        raise InputError(
            f"--precision {precision} with {label}: a plan sets its own weight precision (fp32, fp16, bf16)"
        )
    model = load_model(name_or_path, cache_dir=cache_dir)  # compressed at fp32, then run at `precision`
    if from_state and needs_calibration(plan):  # the calibrated tensors come from the plan's state file
        _from_state(model, plan, pack=pack and precision == "fp32")
    else:
        compress_(model, plan, calib, train, finetune_steps, finetune_lr, pack=pack and precision == "fp32")
    if precision != "fp32":  # float tensors and activations at `precision`, as the dense model at it runs
        model.network.to({"fp16": torch.float16, "bf16": torch.bfloat16}[precision])
        model.info = dataclasses.replace(model.info, precision=precision)
    return model


def _from_state(model, plan: Plan, pack: bool) -> None:
    """Compress by `plan` with its calibrated rules rebuilt from its state file (`compress.state`),
    then install the runtime hooks. Packed: GPTQ layers and whitened screens are built from the
    file's tensors straight into packed form and `quant` rules quantize straight into it
    (`compress_(pack=True)`), one layer at a time, each float weight freed as it is replaced; csp
    rules are built in their calibration-free form and the file is loaded into them.
    Not packed: every calibrated rule so, the simulated modules a compressed model is saved from."""
    from weightwise.compress.configs import Gptq, Screen
    from weightwise.compress.packed_load import gptq_from_state, screen_from_state
    from weightwise.compress.state import calibration_free, load_plan_state, read_plan_state

    tensors = read_plan_state(model, plan.state)
    if pack:
        free = dataclasses.replace(calibration_free(plan, keep=(Gptq, Screen)), runtime=None)
        handlers = {Gptq: gptq_from_state(tensors, plan.state), Screen: screen_from_state(tensors, plan.state)}
        compress_(model, free, pack=True, handlers=handlers)
    else:
        compress_(model, dataclasses.replace(calibration_free(plan), runtime=None))
    load_plan_state(model, plan, plan.state, tensors)
    apply_runtime(model, plan.runtime)
    model.info = dataclasses.replace(model.info, plan=plan.name or "plan")
    model.plan = plan


def needs_calibration(plan: Plan) -> bool:
    """Whether a rule of `plan` chooses its weights from calibration activations (csp pruning, gptq,
    whitened screening)."""
    from weightwise.compress.state import calibrated

    return any(calibrated(r.config) for r in plan.rules)


def _opened(data: Manifest | str | os.PathLike | None) -> Manifest | None:
    return data if data is None or isinstance(data, Manifest) else open_manifest(data)
