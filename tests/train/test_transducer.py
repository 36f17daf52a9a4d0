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


def test_speed_perturbation_resamples_the_batch(small_manifest, tmp_path):
    from weightwise.data import load_manifest
    from weightwise.train.digits import clips_by_split
    from weightwise.train.transducer import _batch

    clips = clips_by_split(load_manifest(small_manifest))["train"]
    plain = _config(small_manifest, tmp_path, steps=1)
    perturbed = _config(small_manifest, tmp_path, steps=1, speed_perturb=0.1)
    ratios = {
        round(len(b) / len(a), 2)
        for step in range(4)
        for (_, a), (_, b) in zip(_batch(plain, clips, [], step), _batch(perturbed, clips, [], step), strict=True)
    }
    assert ratios <= {round(1 / 0.9, 2), 1.0, round(1 / 1.1, 2)} and len(ratios) > 1


def test_augmented_run_trains_and_old_checkpoints_still_resume(small_manifest, tmp_path):
    summary = train_transducer(_config(small_manifest, tmp_path / "a", steps=2, time_masks=2, speed_perturb=0.1))
    assert summary.history and all(h == h for h in summary.history)  # finite losses, no NaN
    checkpoint = _config(small_manifest, tmp_path / "b", steps=2, checkpoint_every=1)
    train_transducer(checkpoint)
    state = (tmp_path / "b" / "checkpoint.pt").read_bytes()
    assert b"time_masks" not in state  # written without the new fields at their defaults: resumable as before


@pytest.mark.parametrize("kw", [{"speed_perturb": 0.7}, {"time_masks": -1}])
def test_bad_augmentation_is_one_line_error(small_manifest, tmp_path, kw):
    with pytest.raises(InputError, match="training:"):
        _config(small_manifest, tmp_path, steps=1, **kw)
