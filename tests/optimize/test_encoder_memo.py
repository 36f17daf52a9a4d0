"""The closed loop's encoder memo: outputs reused only where the encoder is the same, and bounded.

Real whisper-tiny.en and the bundled utterances. Every reuse is checked against the encoder run
afresh in the same state (a stale key would return another state's output), the encoder's real
calls are counted with a forward hook, and each state that must miss is first shown to change the
encoder's output (so a key that left it out would fail the equality checks)."""

from __future__ import annotations

import contextlib

import pytest
import torch

from weightwise.compress.candidates import Candidate, weight_groups
from weightwise.compress.configs import Quant
from weightwise.decode import DecodingOptions, transcribe
from weightwise.decode.features import log_mel_spectrogram, split_windows
from weightwise.decode.transcribe import run_encoder
from weightwise.models.runtime import RuntimeSettings, runtime_applied
from weightwise.optimize.calibrate import all_applied, utterance_errors
from weightwise.optimize.encoder_memo import EncoderMemo

INT8 = Candidate("int8", Quant(bits=8))
INT4 = Candidate("int4-g64", Quant(bits=4, granularity="group", group_size=64))
OPTIONS = DecodingOptions(max_new_tokens=40)


@pytest.fixture
def calls(tiny_model):
    """A counter of the encoder's real forward calls (the hook stays for the whole test, so the
    memo sees the same encoder throughout)."""
    counter = {"n": 0}

    def count(*_args):
        counter["n"] += 1

    handle = tiny_model.network.model.encoder.register_forward_hook(count)
    yield counter
    handle.remove()


@pytest.fixture(scope="module")
def groups(tiny_model):
    return {g.name: g for g in weight_groups(tiny_model.network)}


@pytest.fixture(scope="module")
def features(tiny_model, sample_audio):
    """The first window's features of the first two bundled utterances, as `transcribe` feeds them."""
    out = []
    for _utt, audio in sample_audio[:2]:
        window = next(iter(split_windows(log_mel_spectrogram(audio, tiny_model.n_mels))))
        out.append(window.features.unsqueeze(0).to(tiny_model.dtype))
    return out


@contextlib.contextmanager
def state(model, assignment, runtime=None):
    with all_applied(model, assignment):
        with runtime_applied(model, runtime) if runtime else contextlib.nullcontext():
            yield


def _tokens(model, sample_audio, encoder=None):
    return [transcribe(model, audio, OPTIONS, encoder=encoder).tokens for _utt, audio in sample_audio[:2]]


@torch.inference_mode()
def _fresh(model, features):
    return run_encoder(model, features)


def test_a_decoder_only_change_reuses_the_encoder_and_decodes_the_same(
    tiny_model, samples, sample_audio, groups, calls
):
    memo = EncoderMemo()
    plan_a = {groups["model.decoder.layers.3.fc1"]: INT8}
    plan_b = {groups["model.decoder.layers.3.fc1"]: INT4, groups["model.decoder.embed_tokens"]: INT8}
    with state(tiny_model, plan_a), memo.bound(tiny_model, plan_a) as encoder:
        _tokens(tiny_model, sample_audio, encoder)
    assert (memo.hits, memo.misses, calls["n"]) == (0, 2, 2)
    with state(tiny_model, plan_b):
        with memo.bound(tiny_model, plan_b) as encoder:
            reused = _tokens(tiny_model, sample_audio, encoder)
        assert (memo.hits, memo.misses, calls["n"]) == (2, 2, 2)  # no encoder call at all
        fresh = _tokens(tiny_model, sample_audio)
    assert calls["n"] == 4 and reused == fresh
    # the errors the closed loop reads go through the same memo (one more hit per item)
    manifest = samples.head(2)
    with state(tiny_model, plan_b):
        with memo.bound(tiny_model, plan_b) as encoder:
            memoized = utterance_errors(tiny_model, manifest, OPTIONS, encoder)
        assert memoized == utterance_errors(tiny_model, manifest, OPTIONS)
    assert memo.stats()["hits"] == 4 and memo.stats()["misses"] == 2 and memo.stats()["bindings"] == 3


@pytest.mark.parametrize(
    "encoder_group, runtime",
    [
        ("model.encoder.layers.0.fc1", None),  # an encoder weight compressed
        (None, RuntimeSettings(activation_precision="int8")),  # hooks on the encoder's modules
    ],
)
def test_a_change_that_reaches_the_encoder_runs_it_again(tiny_model, features, groups, calls, encoder_group, runtime):
    decoder = {groups["model.decoder.layers.3.fc1"]: INT8}
    changed = {**decoder, **({groups[encoder_group]: INT4} if encoder_group else {})}
    memo = EncoderMemo()
    with state(tiny_model, decoder), memo.bound(tiny_model, decoder) as encoder:
        before = encoder(tiny_model, features[0])
    with state(tiny_model, changed, runtime):
        fresh = _fresh(tiny_model, features[0])
        assert not torch.equal(fresh, before)  # the change reaches the encoder's output
        with memo.bound(tiny_model, changed) as encoder:
            out = encoder(tiny_model, features[0])
            again = encoder(tiny_model, features[0])
    assert (memo.hits, memo.misses, calls["n"]) == (1, 2, 3)
    assert torch.equal(out, fresh) and torch.equal(again, fresh)


def test_encoder_context_decodes_as_without_the_memo(tiny_model, sample_audio, calls):
    memo = EncoderMemo()
    with memo.bound(tiny_model, {}) as encoder:
        _tokens(tiny_model, sample_audio, encoder)
    with state(tiny_model, {}, RuntimeSettings(encoder_context="auto")):
        with memo.bound(tiny_model, {}) as encoder:
            reused = _tokens(tiny_model, sample_audio, encoder)
        fresh = _tokens(tiny_model, sample_audio)
    assert (memo.hits, memo.misses, calls["n"]) == (0, 4, 6) and reused == fresh


@pytest.mark.parametrize(
    "runtime",
    [
        RuntimeSettings(fused_attention=True),  # the energy model's setting: nothing simulated
        RuntimeSettings(kv_precision="int8", fused_attention=True),  # rounds the decoder's cache only
    ],
)
def test_settings_that_leave_the_encoder_alone_are_out_of_the_key(tiny_model, features, calls, runtime):
    memo = EncoderMemo()
    with memo.bound(tiny_model, {}) as encoder:
        encoder(tiny_model, features[0])
    with state(tiny_model, {}, runtime):
        with memo.bound(tiny_model, {}) as encoder:
            reused = encoder(tiny_model, features[0])
        assert torch.equal(reused, _fresh(tiny_model, features[0]))
    assert (memo.hits, memo.misses, calls["n"]) == (1, 1, 2)


def test_a_colliding_label_or_a_change_outside_the_assignment_is_a_miss(tiny_model, features, groups, calls):
    """The key reads the configs and the encoder's live weights, not the labels the caller gives."""
    group = groups["model.encoder.layers.1.fc2"]
    memo = EncoderMemo()
    with state(tiny_model, {group: INT8}), memo.bound(tiny_model, {group: INT8}) as encoder:
        encoder(tiny_model, features[0])
    fake = Candidate("int8", INT4.config)  # int4 under int8's label
    with state(tiny_model, {group: fake}):
        with memo.bound(tiny_model, {group: fake}) as encoder:
            out = encoder(tiny_model, features[0])
        assert torch.equal(out, _fresh(tiny_model, features[0]))
    assert (memo.hits, memo.misses) == (0, 2)
    weight = tiny_model.network.model.encoder.layers[2].fc1.weight
    with state(tiny_model, {group: INT8}), memo.bound(tiny_model, {group: INT8}) as encoder:
        assert torch.equal(encoder(tiny_model, features[0]), _fresh(tiny_model, features[0]))  # a hit
        handle = tiny_model.network.model.encoder.layers[0].register_forward_hook(lambda *_: None)
        with pytest.raises(RuntimeError, match="changed since it was bound"):  # a hook installed since
            encoder(tiny_model, features[0])
        handle.remove()
        saved = weight.detach().clone()
        try:
            with torch.no_grad():
                weight.mul_(0.5)  # what a handler touching modules outside its group would do
            with pytest.raises(RuntimeError, match="changed since it was bound"):
                encoder(tiny_model, features[0])
            with memo.bound(tiny_model, {group: INT8}) as rebound:  # same assignment, other weights
                assert torch.equal(rebound(tiny_model, features[0]), _fresh(tiny_model, features[0]))
        finally:
            with torch.no_grad():
                weight.copy_(saved)
    assert (memo.hits, memo.misses) == (1, 3)


def test_the_memory_cap_is_honoured(tiny_model, features, groups):
    states = [{}, {groups["model.encoder.layers.0.fc2"]: INT8}, {groups["model.encoder.layers.1.fc2"]: INT8}]
    memo = EncoderMemo(max_signatures=2)
    for assignment in states:
        with state(tiny_model, assignment), memo.bound(tiny_model, assignment) as encoder:
            encoder(tiny_model, features[0])
    size = memo.nbytes // 2
    assert size == 1500 * 384 * 4 and memo.peak_nbytes == 2 * size  # two signatures of one output each
    for assignment, hit in ((states[2], True), (states[0], False)):  # the least recent one was dropped
        hits = memo.hits
        with state(tiny_model, assignment), memo.bound(tiny_model, assignment) as encoder:
            encoder(tiny_model, features[0])
        assert memo.hits == hits + hit
    memo = EncoderMemo(max_signatures=4, max_bytes=size + size // 2)  # room for one output
    with memo.bound(tiny_model, {}) as encoder:
        first = encoder(tiny_model, features[0])
        second = encoder(tiny_model, features[1])  # does not fit: computed, not kept
        assert torch.equal(encoder(tiny_model, features[1]), second) and memo.misses == 3
        assert torch.equal(encoder(tiny_model, features[0]), first) and memo.hits == 1
    with state(tiny_model, states[1]), memo.bound(tiny_model, states[1]) as encoder:
        encoder(tiny_model, features[0])  # the older signature's output makes room
    assert memo.nbytes == size and memo.peak_nbytes <= memo.max_bytes
    with memo.bound(tiny_model, {}) as encoder:
        encoder(tiny_model, features[0])
    assert memo.misses == 5


def test_a_negative_memo_size_is_refused_before_any_work(tmp_path, shared_data_dir):
    from weightwise import OptimizeOptions, optimize
    from weightwise.errors import InputError

    speech = shared_data_dir / "speech"
    options = OptimizeOptions(encoder_memo_signatures=-1, limit_calib=2, limit_eval=2)
    calib = speech / "librispeech_train_clean_100_untranscribed" / "manifest.jsonl"
    eval_set = speech / "librispeech_test_other_mini" / "manifest.jsonl"
    with pytest.raises(InputError, match="encoder_memo_signatures must be >= 0"):
        optimize("whisper-tiny.en", "jetson-orin-nano", 0.5, calib, eval_set, tmp_path / "out", options)
    assert list(tmp_path.iterdir()) == []
