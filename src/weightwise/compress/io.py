"""Save a compressed model (safetensors + plan + module specs) and load it back bit-identically.

Layout of the output directory:
    compressed.json     base model, its weights' sha256, the plan, and {module name: {kind, spec}}
    model.safetensors   the whole network's state (compressed buffers included; shared tensors once)
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from weightwise.compress.modules import CompressedModule, rebuild, replace_module
from weightwise.compress.plan import Plan
from weightwise.errors import InputError

FORMAT_VERSION = 1
MANIFEST = "compressed.json"


def shared_groups(network) -> list[list[str]]:
    """Names of state entries that are one tensor object (tied or shared weights), in groups."""
    by_object: dict[int, list[str]] = {}
    for name, tensor in network.state_dict(keep_vars=True).items():
        by_object.setdefault(id(tensor), []).append(name)
    return [names for names in by_object.values() if len(names) > 1]


def retie(network, groups: list[list[str]]) -> None:
    """Make every name in each group refer to the group's first tensor object again."""
    for first, *others in groups:
        owner, _, attr = first.rpartition(".")
        tensor = getattr(network.get_submodule(owner), attr)
        for name in others:
            owner, _, attr = name.rpartition(".")
            module = network.get_submodule(owner)
            if isinstance(tensor, torch.nn.Parameter):
                module._parameters.pop(attr, None)
                module._buffers.pop(attr, None)
                module.register_parameter(attr, tensor)
            else:
                module._parameters.pop(attr, None)
                module.register_buffer(attr, tensor, persistent=attr not in module._non_persistent_buffers_set)


def save_compressed(model, out_dir: str | os.PathLike) -> Path:
    """Write `model` (compressed with `compress_`) to `out_dir`, atomically (temp dir + rename)."""
    from safetensors.torch import save_model

    if getattr(model, "plan", None) is None:
        raise InputError("model has no plan applied: run compress_ before saving")
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    modules = {name: {"kind": m.kind, "spec": m.spec()} for name, m in model.network.named_modules()
               if isinstance(m, CompressedModule)}
    save_model(model.network, str(tmp / "model.safetensors"))
    info = model.info
    manifest = {"format_version": FORMAT_VERSION, "base_model": info.name, "base_source": info.source,
                "base_weights_sha256": info.weights_sha256, "plan_name": info.plan,
                "plan": model.plan.to_dict(), "modules": modules,
                "shared": shared_groups(model.network)}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def is_compressed_dir(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST).is_file()


def load_compressed(path: str | os.PathLike, precision: str = "fp32", cache_dir=None):
    """Rebuild the base model, swap in the saved compressed modules, load the saved state."""
    import dataclasses

    from safetensors.torch import load_model as load_state

    from weightwise.models.loaders import load_model
    from weightwise.models.registry import resolve_name

    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        base = manifest["base_model"] if resolve_name(manifest["base_model"]) else manifest["base_source"]
        modules, plan = manifest["modules"], Plan.from_dict(manifest["plan"], str(path / MANIFEST))
    except (KeyError, json.JSONDecodeError) as err:
        raise InputError(f"{path / MANIFEST}: malformed compressed-model manifest ({err})") from None
    if precision != "fp32":
        raise InputError(f"{path}: a compressed model runs at the precision its plan sets (fp32 base)")
    model = load_model(base, cache_dir=cache_dir)
    if model.info.weights_sha256 != manifest.get("base_weights_sha256"):
        raise InputError(f"{path}: base model {base} has different weights than the ones compressed")
    for name, entry in modules.items():
        replace_module(model.network, name, rebuild(entry["kind"], entry["spec"]))
    retie(model.network, manifest.get("shared", []))
    missing, unexpected = load_state(model.network, str(path / "model.safetensors"), strict=False)
    if missing or unexpected:
        raise InputError(f"{path}: saved state does not match (missing {sorted(missing)[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]})")
    model.network.eval()
    model.plan = plan
    model.info = dataclasses.replace(model.info, name=path.name, source=str(path),
                                     plan=manifest.get("plan_name") or "plan")
    return model
