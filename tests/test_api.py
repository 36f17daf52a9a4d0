"""The public API: every exported name resolves, and the CLI imports nothing but `weightwise`."""

from __future__ import annotations

import ast
import inspect

import pytest

import weightwise
from weightwise import cli

CLI_NAMES = (
    "compress_",
    "Plan",
    "profile",
    "load_device",
    "run_bench",
    "write_report",
    "evaluate",
    "transcribe",
    "load_model",
    "load_manifest",
    "save_compressed",
    "load_model_with_plan",
    "open_manifest",
    "BenchConfig",
)


@pytest.mark.parametrize("name", weightwise.__all__)
def test_every_exported_name_resolves_to_its_module_object(name):
    value = getattr(weightwise, name)
    module = __import__(weightwise._EXPORTS[name], fromlist=[name])
    assert value is getattr(module, name)


def test_names_of_both_a_function_and_a_subpackage_are_the_functions():
    from weightwise import evaluate, profile
    from weightwise.evaluate import runtime
    from weightwise.profile import traffic

    assert callable(evaluate) and evaluate.__module__ == "weightwise.evaluate.evaluate"
    assert callable(profile) and profile.__module__ == "weightwise.profile.profile"
    assert callable(runtime.threads) and traffic.KV_BYTES_PER_VALUE  # the subpackages still import


def test_the_api_covers_what_the_cli_uses():
    assert set(CLI_NAMES) <= set(weightwise.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        weightwise.nope  # noqa: B018


def test_the_cli_imports_only_the_top_level_package():
    tree = ast.parse(inspect.getsource(cli))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    ours = {name for name in imported if name and name.split(".")[0] == "weightwise"}
    assert ours == {"weightwise"}, sorted(ours)
    used = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "weightwise"
        for alias in node.names
    }
    assert used <= set(weightwise.__all__), sorted(used - set(weightwise.__all__))
