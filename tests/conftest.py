"""Shared pytest fixtures: where the real speech lives, and the real models loaded once per session."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Point the converted-weights cache at a fresh folder before anything imports weightwise, so the
# tests never read or write ~/.cache and the real CTranslate2 -> safetensors conversion runs here.
_CACHE_DIR = Path(tempfile.mkdtemp(prefix="weightwise-test-cache-"))
os.environ["WEIGHTWISE_CACHE"] = str(_CACHE_DIR)
atexit.register(shutil.rmtree, _CACHE_DIR, True)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The project's shared/data folder (real speech + noise), beside the repository root.

    Skips the test when the folder is absent (e.g. a bare checkout on another machine).
    """
    path = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path}")
    return path


@pytest.fixture(scope="session")
def weightwise_cache() -> Path:
    """The session's WEIGHTWISE_CACHE folder (converted safetensors, joined model.bin files)."""
    assert os.environ["WEIGHTWISE_CACHE"] == str(_CACHE_DIR), "a test changed WEIGHTWISE_CACHE"
    return _CACHE_DIR


@pytest.fixture(scope="session")
def benchmark_script():
    """Loads a script of benchmarks/ by name (e.g. "paired_wer") as a module; its own
    `from _common import ...` finds benchmarks/_common.py."""
    import importlib.util
    import sys

    folder = Path(__file__).resolve().parents[1] / "benchmarks"

    def load(name: str):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def tiny_model(weightwise_cache):
    """whisper-tiny.en at fp32, converted from the packaged CTranslate2 file once per session."""
    from weightwise.models import load_model

    return load_model("whisper-tiny.en")


@pytest.fixture(scope="session")
def samples():
    """The 4 bundled utterances (2 LibriSpeech test-clean, 2 ARCTIC) with reference texts."""
    from weightwise.data import sample_manifest

    return sample_manifest()


@pytest.fixture(scope="session")
def sample_audio(samples):
    """(utterance, 16 kHz float32 samples) for every bundled utterance."""
    from weightwise.audio import load_audio

    return [(utt, load_audio(utt.audio_path)) for utt in samples]


@pytest.fixture(scope="session")
def tiny_greedy(tiny_model, sample_audio):
    """Greedy transcripts of the bundled samples by tiny.en: {utterance id: Transcript}."""
    from weightwise.decode import transcribe

    return {utt.id: transcribe(tiny_model, audio) for utt, audio in sample_audio}


# A model broken on purpose: 50% magnitude pruning of every attention and FFN Linear of tiny.en.
# On some utterances it loops ("I'm not, I'm not, ...") until the token limit: the runaway
# decoding that weightwise.decode.guard stops.
BROKEN_PLAN = {"rules": [{"match": "re:.*(fc1|fc2|q_proj|k_proj|v_proj|out_proj)", "prune": {"sparsity": 0.5}}]}
LOOPING_UTTERANCE = "1688-142285-0001"  # librispeech_test_other_mini: the broken model loops on it


@pytest.fixture(scope="session")
def broken_plan() -> dict:
    """BROKEN_PLAN as a plan JSON object."""
    return BROKEN_PLAN


@pytest.fixture(scope="session")
def broken_tiny(weightwise_cache):
    """tiny.en after BROKEN_PLAN (its own copy: compression works in place)."""
    from weightwise.compress import Plan, compress_
    from weightwise.models import load_model

    model = load_model("whisper-tiny.en")
    compress_(model, Plan.from_dict(BROKEN_PLAN))
    return model


@pytest.fixture(scope="session")
def looping_audio(shared_data_dir):
    """(utterance, 16 kHz samples) of LOOPING_UTTERANCE."""
    from weightwise.audio import load_audio
    from weightwise.data import load_manifest

    manifest = load_manifest(shared_data_dir / "speech" / "librispeech_test_other_mini")
    utt = next(u for u in manifest if u.id == LOOPING_UTTERANCE)
    return utt, load_audio(utt.audio_path)


@pytest.fixture(scope="session")
def ray_cluster(weightwise_cache) -> str:
    """One local 2-CPU Ray cluster for the whole session (it takes seconds to start); its address.

    Skips the test when Ray (the optional `ray` extra) is not installed. Started after
    WEIGHTWISE_CACHE is set, so its workers share the session's converted weights.
    """
    import logging

    ray = pytest.importorskip("ray", reason="--executor ray needs the optional extra: pip install 'weightwise[ray]'")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="session")
def fsdd_strings(shared_data_dir):
    """`make(folder, split, n, seed)`: `n` real digit strings joined from 12 FSDD clips of `split`
    (12 speakers and digits), written to `folder`, as a manifest."""
    from weightwise.data import Manifest, load_manifest
    from weightwise.train.digits import DigitStrings, clips_by_split, write_digit_strings

    fsdd = load_manifest(shared_data_dir / "speech" / "fsdd_digits" / "manifest.jsonl")

    def make(folder, split: str, n: int, seed: int) -> Manifest:
        picked = [u for u in fsdd if u.extra.get("split") == split][::97][:12]
        clips = clips_by_split(Manifest(tuple(picked), "picked"))[split]
        written = write_digit_strings(clips, DigitStrings(max_digits=5), n, seed, folder, id_prefix=split)
        return load_manifest(written)

    return make
