"""`models` learns about new checkpoint folders through `register_loader`, never by importing above it."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import torch

import weightwise.models.loaders as loaders
from weightwise.models import load_model, register_loader

MODELS_DIR = Path(loaders.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module an `import` statement anywhere in `path` names (function-level ones included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_models_never_imports_a_layer_above_it():
    above = ("weightwise.compress", "weightwise.evaluate", "weightwise.report", "weightwise.cli", "weightwise.profile")
    for path in sorted(MODELS_DIR.glob("*.py")):
        upward = sorted(m for m in imported_modules(path) if m.startswith(above))
        assert not upward, f"{path.name} imports {upward}"


def test_a_registered_loader_reads_its_folders(tmp_path, tiny_model, monkeypatch):
    """A folder with `alias.json` (a made-up format) names a registered model; its loader resolves it."""
    monkeypatch.setattr(loaders, "_LOADERS", list(loaders._LOADERS))
    calls = []

    def is_alias(path: Path) -> bool:
        return (path / "alias.json").is_file()

    def load_alias(path: Path, precision: str, cache_dir: Path):
        calls.append((path, precision, cache_dir))
        return load_model(json.loads((path / "alias.json").read_text())["model"], precision, cache_dir)

    folder = tmp_path / "my-alias"
    folder.mkdir()
    (folder / "alias.json").write_text(json.dumps({"model": "whisper-tiny.en"}))
    register_loader(is_alias, load_alias)
    register_loader(is_alias, load_alias)  # registering twice keeps one entry
    assert loaders._LOADERS.count((is_alias, load_alias)) == 1
    model = load_model(str(folder))
    assert calls == [(folder, "fp32", loaders.default_cache_dir())]
    a, b = model.network.state_dict(), tiny_model.network.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_compressed_folders_are_registered_by_compress():
    import weightwise.compress.io as compress_io

    assert (compress_io.is_compressed_dir, compress_io.load_compressed) in loaders._LOADERS
