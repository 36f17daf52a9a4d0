"""Executors: the same results and the same one-line errors wherever the tasks run."""

import os
import sys

import pytest

from weightwise.data import load_manifest, sample_manifest
from weightwise.errors import InputError
from weightwise.executors import ExecutorConfig, open_executor, timed_share


def _first_id(limit, path):
    """A real task: open a manifest (an InputError when it is not there), count the threads."""
    import torch

    with timed_share() as share:
        manifest = load_manifest(path).head(limit)
    return [u.id for u in manifest], torch.get_num_threads(), share.tasks_on_node, os.getpid()


def test_config_checks_its_flags():
    with pytest.raises(InputError, match="--executor 'dask': choose from local, ray"):
        ExecutorConfig("dask")
    with pytest.raises(InputError, match="--ray-address needs --executor ray"):
        ExecutorConfig("local", address="auto")
    with pytest.raises(InputError, match="--threads must be a positive integer"):
        ExecutorConfig("ray", threads=0)


def _run(config, paths):
    with open_executor(config) as executor:
        return [result for _, result in sorted(executor.map(_first_id, paths, shared=2))]


def test_ray_gives_the_local_results_and_its_error(ray_cluster, tmp_path):
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import a test module
    manifest = str(sample_manifest().source)
    paths = [manifest] * 4
    local = _run(ExecutorConfig("local"), paths)
    ray = _run(ExecutorConfig("ray", threads=1), paths)
    assert [r[0] for r in ray] == [r[0] for r in local] and len(local[0][0]) == 2
    assert {r[1] for r in ray} == {1}  # --threads per task
    # tasks whose intervals overlap a task's own: 2 run at once on 2 CPUs, but a task can overlap the
    # end of one on the other CPU and the start of the next there (3), up to the 4 of the run
    assert {r[2] for r in local} == {1} and all(1 <= r[2] <= len(paths) for r in ray)
    assert {r[3] for r in local} == {os.getpid()} and os.getpid() not in {r[3] for r in ray}
    missing = str(tmp_path / "nope.jsonl")
    errors = []
    for kind in ("local", "ray"):
        with pytest.raises(InputError) as err:
            _run(ExecutorConfig(kind, threads=1), [manifest, missing])
        errors.append(str(err.value))
    assert errors[0] == errors[1] and missing in errors[0] and "\n" not in errors[0]


def test_threads_beyond_every_node_is_one_line(ray_cluster):
    with pytest.raises(InputError, match="--threads 64: no node of the Ray cluster has that many CPUs"):
        _run(ExecutorConfig("ray", threads=64), [])


def test_cli_flags_are_checked_before_any_work(tmp_path, capsys):
    from weightwise.cli import main

    out = str(tmp_path / "r.jsonl")
    assert main(["bench", "--data", "samples", "--out", out, "--ray-address", "auto"]) == 2
    assert capsys.readouterr().err.strip() == "weightwise: error: --ray-address needs --executor ray"
    assert not (tmp_path / "r.jsonl").exists()
    optimize = ["optimize", "--device", "jetson-orin-nano", "--wer-budget", "1", "--calib", "samples"]
    assert main([*optimize, "--eval", "samples", "--out", str(tmp_path / "opt"), "--ray-address", "auto"]) == 2
    assert capsys.readouterr().err.strip() == "weightwise: error: --ray-address needs --executor ray"
    assert not (tmp_path / "opt").exists()


def test_ray_missing_is_a_one_line_error_naming_the_extra(tmp_path):
    import subprocess

    code = (
        "import sys; sys.modules['ray'] = None\n"  # as if the ray extra were not installed
        "from weightwise.cli import main\n"
        f"sys.exit(main(['bench', '--data', 'samples', '--out', {str(tmp_path / 'r.jsonl')!r}, '--executor', 'ray']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "weightwise: error: --executor ray needs Ray, an optional extra: pip install 'weightwise[ray]'"
    ]
