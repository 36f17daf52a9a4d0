"""Save a compressed model (safetensors + plan + module specs) and load it back bit-identically.

Layout of the output directory:
    compressed.json     base model, its weights' sha256, the plan, and {module name: {kind, spec}}
    model.safetensors   the whole network's state (compressed buffers included; shared tensors once)
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from weightwise.compress.modules import CompressedModule, rebuild, replace_module
from weightwise.compress.packed_load import load_packed, packable_spec
from weightwise.compress.plan import Plan
from weightwise.errors import InputError
from weightwise.evaluate.runtime import release_freed_memory
from weightwise.models import load_model
from weightwise.models.registry import resolve_name
from weightwise.models.runtime import apply_runtime

FORMAT_VERSION = 1
MANIFEST = "compressed.json"
WEIGHTS = "model.safetensors"
SAVED_FILES = (MANIFEST, WEIGHTS)  # all that save_compressed writes, and all it may remove


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


def check_compressed_out(out_dir: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Return `out_dir` as an absolute path if `save_compressed` may write there: a new folder, an
    empty one, or a compressed model it wrote before (``compressed.json`` + ``model.safetensors``,
    nothing else). Cheap: call it before loading and compressing the model.

    Raises:
        InputError: `out_dir` is an existing file or a symbolic link, a folder holding anything
            else, the current folder or one above it, one of `inputs` (paths that do not exist
            are ignored) or a folder above one, a path under a file, or in a folder where
            nothing can be created.
    """
    where = f"--out {out_dir}"
    out = Path(os.path.abspath(Path(out_dir).expanduser()))
    real, cwd = out.resolve(), Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        raise InputError(f"{where}: is the current folder or one above it; name a new folder")
    for given in inputs:
        source = Path(given).expanduser().resolve() if given else None
        if source is not None and source.exists() and (real == source or real in source.parents):
            raise InputError(f"{where}: is or holds the input {given}; name a new folder")
    if out.is_symlink():
        raise InputError(f"{where}: is a symbolic link; name the folder itself")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if existing != out:
        if not existing.is_dir():
            raise InputError(f"{where}: {existing} is a file, not a folder")
        _check_writable(where, existing)
        return out
    if not out.is_dir():
        raise InputError(f"{where}: is an existing file, not a folder")
    entries = sorted(p.name for p in out.iterdir())
    if entries and not _is_saved_model(out):
        listed = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise InputError(
            f"{where}: is a folder that is not a weightwise compressed model (it holds {listed}); "
            "name a new or empty folder"
        )
    others = [name for name in entries if name not in SAVED_FILES]
    if others:
        raise InputError(
            f"{where}: holds a compressed model and also {', '.join(others[:3])}, which a new "
            "model would not keep; name a new folder"
        )
    _check_writable(where, out.parent)
    return out


def _is_saved_model(folder: Path) -> bool:
    """`folder/compressed.json` is a manifest that `save_compressed` wrote."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and {"format_version", "base_model", "modules"} <= set(manifest)


def _check_writable(where: str, folder: Path) -> None:
    """Create and remove a probe folder in `folder` (permission bits alone miss read-only mounts)."""
    try:
        Path(tempfile.mkdtemp(prefix=".weightwise-probe.", dir=folder)).rmdir()
    except OSError as err:
        raise InputError(f"{where}: {folder} is not writable ({err.strerror or err})") from None


def save_compressed(model, out_dir: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Write `model` (compressed with `compress_`) to the folder `out_dir`, atomically.

    The files are written to a temporary folder beside `out_dir`, which then takes its place; a
    compressed model already there is moved aside and removed only once the new one is in place.
    Nothing but that model's two files is ever removed (see `check_compressed_out`, which also
    refuses `out_dir` when it is or holds the model's source or one of `inputs`).
    """
    if getattr(model, "plan", None) is None:
        raise InputError("model has no plan applied: run compress_ before saving")
    out = check_compressed_out(out_dir, (model.info.source, *inputs))
    tag = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
    tmp, aside = out.with_name(f".{out.name}.{tag}.tmp"), out.with_name(f".{out.name}.{tag}.old")
    made = done = False
    created = next((p for p in reversed((out.parent, *out.parent.parents)) if not p.exists()), None)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        made = True
        _write(model, tmp)
        if out.exists():
            os.replace(out, aside)
        os.replace(tmp, out)
        done = True
    except OSError as err:
        raise InputError(f"--out {out_dir}: cannot write the compressed model ({err.strerror or err})") from None
    finally:
        if not done and aside.exists() and not out.exists():
            os.replace(aside, out)  # put the model that was there back
        if made:
            shutil.rmtree(tmp, ignore_errors=True)
        if done:
            _remove_saved(aside)
        elif created is not None:
            _remove_empty_folders(out.parent, created)
    return out


def _write(model, folder: Path) -> None:
    from safetensors.torch import save_model

    modules = {
        name: {"kind": m.kind, "spec": m.spec()}
        for name, m in model.network.named_modules()
        if isinstance(m, CompressedModule)
    }
    save_model(model.network, str(folder / WEIGHTS))
    info = model.info
    manifest = {
        "format_version": FORMAT_VERSION,
        "base_model": info.name,
        "base_source": info.source,
        "base_weights_sha256": info.weights_sha256,
        "plan_name": info.plan,
        "plan": model.plan.to_dict(),
        "modules": modules,
        "shared": shared_groups(model.network),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _remove_saved(folder: Path) -> None:
    """Remove a replaced model: its files, then the folder if nothing else appeared in it."""
    if not folder.exists():
        return
    for name in SAVED_FILES:
        (folder / name).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass  # someone put a file there meanwhile: theirs to keep


def _remove_empty_folders(folder: Path, top: Path) -> None:
    """Remove `folder` and its parents up to `top` (the folders a failed save created), if empty."""
    while True:
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == top:
            return
        folder = folder.parent


def is_compressed_dir(path: Path) -> bool:
    """A folder `save_compressed` wrote (what `load_model` hands to `load_compressed`)."""
    return path.is_dir() and (path / MANIFEST).is_file()


def load_compressed(path: str | os.PathLike, precision: str = "fp32", cache_dir=None, pack: bool = False):
    """Rebuild the base model, swap in the saved compressed modules, load the saved state.

    `pack`: quantized layers that a packed kernel runs come up as `PackedQuantModule`s packed from
    the saved codes (weights in RAM about the stored bytes; `weightwise.compress.packed`), never
    as simulated modules with a float copy; False (the default) rebuilds the saved state exactly.

    Raises:
        InputError: a malformed manifest, a module kind or spec this version cannot rebuild,
            unreadable or mismatched weights, or base weights other than the ones compressed.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_model as load_state

    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        base = manifest["base_model"] if resolve_name(manifest["base_model"]) else manifest["base_source"]
        modules, plan = dict(manifest["modules"]), Plan.from_dict(manifest["plan"], str(path / MANIFEST))
    except (KeyError, TypeError, ValueError) as err:  # ValueError: bad JSON or UTF-8
        raise InputError(f"{path / MANIFEST}: malformed compressed-model manifest ({_reason(err)})") from None
    if precision != "fp32":
        raise InputError(f"{path}: a compressed model runs at the precision its plan sets (fp32 base)")
    model = load_model(base, cache_dir=cache_dir)
    if model.info.weights_sha256 != manifest.get("base_weights_sha256"):
        raise InputError(f"{path}: base model {base} has different weights than the ones compressed")
    packed = {n: e["spec"] for n, e in modules.items() if pack and packable_spec(e.get("kind"), e.get("spec"))}
    for name, entry in modules.items():
        if name in packed:
            continue  # the base module stays until its saved codes are packed, below
        try:
            replace_module(model.network, name, rebuild(entry["kind"], entry["spec"]))
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise InputError(f"{path / MANIFEST}: module {name}: cannot rebuild it ({_reason(err)})") from None
    shared = manifest.get("shared", [])
    try:
        retie(model.network, [g for g in shared if not all(_under(n, packed) for n in g)])
        missing, unexpected = load_state(model.network, str(path / WEIGHTS), strict=False)
        if packed:
            with safe_open(str(path / WEIGHTS), "pt") as saved:
                keys = set(saved.keys())
                load_packed(model.network, lambda k: saved.get_tensor(k) if k in keys else None, packed, shared)
            release_freed_memory()
    except (AttributeError, OSError, RuntimeError, SafetensorError, TypeError, ValueError) as err:
        raise InputError(f"{path / WEIGHTS}: cannot load the saved weights ({_reason(err)})") from None
    missing = [k for k in missing if not _under(k, packed)]  # the base modules' float weights
    unexpected = [k for k in unexpected if not _under(k, packed)]  # the packed modules' codes
    if missing or unexpected:
        raise InputError(
            f"{path}: saved state does not match (missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    model.network.eval()
    apply_runtime(model, plan.runtime)
    model.plan = plan
    model.info = dataclasses.replace(
        model.info, name=path.name, source=str(path), plan=manifest.get("plan_name") or "plan"
    )
    return model


def _under(key: str, modules: dict[str, Any]) -> bool:
    """`key` names a module of `modules` or a tensor inside one."""
    return any(key == name or key.startswith(f"{name}.") for name in modules)


def _reason(err: BaseException) -> str:
    """The first line of an error's message; for a KeyError, its message or the missing key."""
    text = str(err)
    if isinstance(err, KeyError) and err.args:
        key = err.args[0]
        text = key if isinstance(key, str) and " " in key else f"no {key!r}"
    return (text.splitlines() or [type(err).__name__])[0]
