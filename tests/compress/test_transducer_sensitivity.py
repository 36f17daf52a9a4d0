"""Transducer sensitivity: the reference is the deployed greedy decode, and the joiner's KL along its
alignment is 0 for the uncompressed model and grows as bits drop (shipped weights, real FSDD audio)."""

from __future__ import annotations

import pytest
import torch

from weightwise.compress.candidates import Group, applied, weight_groups
from weightwise.compress.configs import Quant
from weightwise.compress.sensitivity import build_reference, score
from weightwise.compress.transducer_sensitivity import lattice_points
from weightwise.data import iter_audio
from weightwise.decode import transcribe
from weightwise.models import load_model
from weightwise.models.transducer.search import Emission


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return load_model("transducer-fsdd")


@pytest.fixture(scope="module")
def reference(model, fsdd_strings, tmp_path_factory):
    calib = fsdd_strings(tmp_path_factory.mktemp("calib"), "train", 3, seed=5)
    names = [m for g in weight_groups(model.network) for m in g.modules]
    return calib, build_reference(model, model, calib, names)


def test_reference_is_the_deployed_greedy_decode(model, reference):
    calib, ref = reference
    deployed = {utt.id: transcribe(model, samples).text for utt, samples in iter_audio(calib)}
    assert dict(ref.transcripts) == deployed
    assert all(text.split() for text in deployed.values())
    for window in ref.windows:
        # one blank per frame (the symbol limit never ends a frame here) and one point per label
        assert len(window.targets) == len(window.encoder_out) + len(window.tokens)
        assert (window.targets != 0).sum() == len(window.tokens)
        assert torch.equal(window.targets[window.targets != 0], window.tokens)


def test_lattice_points_follow_greedy_search():
    emissions = (Emission(3, 1), Emission(5, 1), Emission(2, 3))
    frames, positions, targets = lattice_points(emissions, 4, max_symbols=2, blank=0)
    # frame 1 emits two labels and hits the limit of 2: no blank evaluation there
    assert frames.tolist() == [0, 1, 1, 2, 3, 3]
    assert positions.tolist() == [0, 0, 1, 2, 2, 3]
    assert targets.tolist() == [0, 3, 5, 0, 2, 0]


@pytest.mark.parametrize("name", ["joiner.out", "predictor.gates", "encoder.blocks.0.ffn1.fc1"])
def test_kl_is_zero_uncompressed_and_grows_as_bits_drop(model, reference, name):
    _, ref = reference
    group = Group(name, (name,))
    assert score(model, ref, group)["kl"] == 0.0
    kls = []
    for bits in (16, 8, 4, 3):
        with applied(model.network, group, Quant(bits=bits, granularity="channel")):
            kls.append(score(model, ref, group)["kl"])
    assert score(model, ref, group)["kl"] == 0.0  # restored
    # fp16 is within float rounding of 0 (a KL estimate may come out a hair below it)
    assert abs(kls[0]) < kls[1] < kls[2] < kls[3], kls
    assert kls[3] > 1e-6
