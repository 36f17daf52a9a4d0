"""The training recipe on real FSDD clips: the loss falls, a killed run resumes where it stopped."""

from __future__ import annotations

import json

import pytest

from weightwise.errors import InputError
from weightwise.models.transducer import TransducerConfig
from weightwise.train import DigitStrings, TrainConfig, train_transducer

TINY = TransducerConfig(d_model=16, n_heads=2, ffn_dim=16, n_layers=1, pred_dim=8, joiner_dim=8, chunk_frames=4)


@pytest.fixture(scope="module")
def small_manifest(shared_data_dir, tmp_path_factory):
    """8 train-split FSDD clips and 2 test-split ones, by absolute path."""
    folder = shared_data_dir / "speech" / "fsdd_digits"
    records = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    picked = [r for r in records if r["split"] == "train"][::37][:8] + [r for r in records if r["split"] == "test"][:2]
    out = tmp_path_factory.mktemp("fsdd") / "manifest.jsonl"
    out.write_text("".join(json.dumps({**r, "audio": str(folder / r["audio"])}) + "\n" for r in picked))
    return out


def _config(manifest, out, **kw) -> TrainConfig:
    spec = DigitStrings(min_digits=2, max_digits=3)
    return TrainConfig(data=str(manifest), out=str(out), model=TINY, strings=spec, batch_size=3, **kw)


class _Killed(Exception):
    pass


def _killed_after(n: int):
    def progress(steps, label):
        for i, step in enumerate(steps):
            if i == n:
                raise _Killed
            yield step

    return progress


def test_killed_run_resumes_to_the_same_history(small_manifest, tmp_path):
    unbroken = train_transducer(_config(small_manifest, tmp_path / "a", steps=4, checkpoint_every=2))
    with pytest.raises(_Killed):
        train_transducer(_config(small_manifest, tmp_path / "b", steps=4, checkpoint_every=2), _killed_after(3))
    resumed = train_transducer(_config(small_manifest, tmp_path / "b", steps=4, checkpoint_every=2))
    assert resumed.resumed_from == 2
    assert resumed.history == pytest.approx(unbroken.history, rel=1e-4)
    assert (tmp_path / "b" / "model" / "model.safetensors").is_file()


def test_other_settings_do_not_resume(small_manifest, tmp_path):
    train_transducer(_config(small_manifest, tmp_path, steps=1, checkpoint_every=1))
    with pytest.raises(InputError, match="other settings"):
        train_transducer(_config(small_manifest, tmp_path, steps=2, checkpoint_every=1, seed=3))


def test_unknown_split_is_one_line_error(small_manifest, tmp_path):
    with pytest.raises(InputError, match="no utterances with split 'dev'"):
        train_transducer(_config(small_manifest, tmp_path, steps=1, train_split="dev"))
