"""Immutable manifests: which audio files to run, with their reference text.

The on-disk format is the one of `shared/data/*/manifest.jsonl`: one JSON object per line with
`id`, `audio` (relative to the manifest's folder, or absolute), `text` (may be null or absent),
`speaker`, `duration` (seconds) and any other fields, which are kept read-only in
`Utterance.extra` and written back unchanged. Every problem in a manifest is an `InputError`
naming the file and line, because a bad line 900 of a benchmark manifest should cost the user
one look, not a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from weightwise.audio import audio_duration_s, load_audio
from weightwise.data._records import (
    CORE_FIELDS,
    check_record,
    decode_line,
    dump_line,
    freeze,
    write_lines_atomic,
)
from weightwise.errors import InputError

__all__ = ["Manifest", "Utterance", "iter_audio"]


@dataclass(frozen=True)
class Utterance:
    """One audio file to transcribe, with its reference text when there is one.

    Attributes:
        id: unique within a manifest.
        audio_path: the audio file; absolute when read from a manifest (resolved against the
            manifest's folder).
        text: reference transcript, or None for untranscribed audio (latency/energy runs).
        speaker: speaker label, if known.
        duration_s: length in seconds as recorded in the manifest (or read from the header).
        extra: the other fields of the manifest line, read-only (nested lists become tuples).
        line: 1-based line of the manifest this came from, only for error messages; it is not
            compared and not written back.
    """

    id: str
    audio_path: Path
    text: str | None
    speaker: str | None = None
    duration_s: float | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    line: int | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "audio_path", Path(self.audio_path))
        object.__setattr__(self, "extra", freeze(dict(self.extra)))


@dataclass(frozen=True)
class Manifest:
    """An ordered, immutable set of utterances and where they came from.

    Attributes:
        utterances: in file order.
        source: the manifest path (or a description for ad-hoc sets); used in error messages.
    """

    utterances: tuple[Utterance, ...]
    source: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "utterances", tuple(self.utterances))
        object.__setattr__(self, "source", str(self.source))

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    def __getitem__(self, index: int) -> Utterance:
        return self.utterances[index]

    def head(self, n: int) -> Manifest:
        """The first `n` utterances (all of them if there are fewer), for quick runs."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"{self.source}: head(n) needs an integer n >= 1, got {n!r}")
        return Manifest(self.utterances[:n], self.source)

    @classmethod
    def concat(cls, manifests: Sequence[Manifest]) -> Manifest:
        """One manifest of `manifests`' utterances in order (source "A + B"); one of them alone as is.

        Raises:
            InputError: no manifests, or an id found in two of them (named with both sources).
        """
        if not manifests:
            raise InputError("concat needs at least one manifest")
        if len(manifests) == 1:
            return manifests[0]
        seen: dict[str, str] = {}
        for manifest in manifests:
            for utt in manifest:
                if utt.id in seen:
                    raise InputError(f"{manifest.source}: duplicate id '{utt.id}' (also in {seen[utt.id]})")
                seen[utt.id] = manifest.source
        return cls(tuple(u for m in manifests for u in m), " + ".join(m.source for m in manifests))

    @property
    def total_duration_s(self) -> float:
        """Sum of the known durations; utterances without one count as 0."""
        return float(sum(u.duration_s for u in self.utterances if u.duration_s is not None))

    @property
    def has_text(self) -> bool:
        """True when every utterance has a reference text, i.e. WER can be computed."""
        return all(u.text is not None for u in self.utterances)

    def check_files(self) -> None:
        """Fail on the first utterance whose audio file does not exist.

        Raises:
            InputError: "<source>:<line>: audio file not found: <path>".
        """
        for utt in self.utterances:
            if not utt.audio_path.is_file():
                where = self.source if utt.line is None else f"{self.source}:{utt.line}"
                raise InputError(f"{where}: audio file not found: {utt.audio_path}")

    def check_audio(self) -> None:
        """Decode every audio file once, so a bad one fails before a model is loaded.

        Catches what a header read cannot: truncated or corrupt data, NaN/inf samples, samples
        far beyond full scale (see `weightwise.audio.load_audio`). The samples are not kept.

        Raises:
            InputError: the first bad file, as "<source>:<line>: <file>: <problem>" for a
                manifest line, or "<file>: <problem>" for ad-hoc files.
        """
        for _utt, _samples in iter_audio(self):
            pass

    def to_jsonl(self, path: str | os.PathLike) -> None:
        """Write the manifest atomically (temp file + rename), in the shared format.

        `audio` is written relative to the output folder when the file lies inside it, so the
        folder can be moved as a whole; otherwise it is written absolute.
        """
        out = Path(path)
        folder = out.parent.resolve()
        write_lines_atomic(out, [dump_line(_to_record(u, folder)) for u in self.utterances])

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike, check_files: bool = True) -> Manifest:
        """Read a manifest.jsonl (see the module docstring for the format).

        Args:
            path: the .jsonl file.
            check_files: also fail now if an audio file is missing, rather than mid-run.

        Raises:
            InputError: missing file, no entries, a malformed line, a missing `id`/`audio`,
                a duplicate id or a bad `duration` (with line number), or a missing audio file.
        """
        file = Path(path)
        if not file.is_file():
            problem = "manifest file not found"
            if file.is_dir():
                problem = "is a directory, not a manifest file"
            raise InputError(f"{file}: {problem}")
        utterances = _parse_lines(file)
        if not utterances:
            raise InputError(f"{file}: empty manifest (no entries)")
        manifest = cls(tuple(utterances), str(file))
        if check_files:
            manifest.check_files()
        return manifest

    @classmethod
    def from_paths(cls, paths: Sequence[str | os.PathLike]) -> Manifest:
        """An untranscribed manifest for ad-hoc audio files; id is the file name's stem.

        Raises:
            InputError: no paths, an unreadable audio file, or two files with the same stem.
        """
        if isinstance(paths, (str, os.PathLike)) or not paths:
            raise InputError("no audio files given")
        utterances, seen = [], {}
        for raw in paths:
            file = Path(raw)
            duration_s = audio_duration_s(file)
            if file.stem in seen:
                raise InputError(f"{file}: same id '{file.stem}' as {seen[file.stem]}; rename one")
            seen[file.stem] = file
            utterances.append(Utterance(file.stem, file.resolve(), None, None, duration_s))
        shown = ", ".join(str(p) for p in paths[:3]) + (", ..." if len(paths) > 3 else "")
        return cls(tuple(utterances), f"audio files: {shown}")


def iter_audio(manifest: Manifest) -> Iterator[tuple[Utterance, np.ndarray]]:
    """(utterance, mono float32 samples at `weightwise.audio.SAMPLE_RATE`) for every utterance, in
    order, each file decoded when its turn comes.

    Raises:
        InputError: the first file that does not decode, as "<source>:<line>: <file>: <problem>"
            for a manifest line, or "<file>: <problem>" for ad-hoc files.
    """
    for utt in manifest:
        try:
            yield utt, load_audio(utt.audio_path)
        except InputError as err:
            where = "" if utt.line is None else f"{manifest.source}:{utt.line}: "
            raise InputError(f"{where}{err}") from None


def _parse_lines(file: Path) -> list[Utterance]:
    """Parse every non-blank line, rejecting duplicate ids with both line numbers."""
    utterances: list[Utterance] = []
    first_line: dict[str, int] = {}
    with file.open("rb") as lines:
        for lineno, raw in enumerate(lines, start=1):
            where = f"{file}:{lineno}"
            record = decode_line(raw, where, first=lineno == 1)
            if record is None:
                continue
            utt = _to_utterance(record, file.parent, where, lineno)
            if utt.id in first_line:
                first = first_line[utt.id]
                raise InputError(f"{where}: duplicate id '{utt.id}' (first on line {first})")
            first_line[utt.id] = lineno
            utterances.append(utt)
    return utterances


def _to_utterance(record: dict[str, Any], folder: Path, where: str, lineno: int) -> Utterance:
    """Validate the core fields of one record and resolve its audio path."""
    check_record(record, where)
    extra = {k: v for k, v in record.items() if k not in CORE_FIELDS}
    duration = record.get("duration")
    return Utterance(
        id=record["id"],
        audio_path=(folder / record["audio"]).resolve(),
        text=record.get("text"),
        speaker=record.get("speaker"),
        duration_s=None if duration is None else float(duration),
        extra=extra,
        line=lineno,
    )


def _to_record(utt: Utterance, folder: Path) -> dict[str, Any]:
    """The JSON object for one utterance: core fields first, then the extra ones."""
    audio = utt.audio_path if utt.audio_path.is_absolute() else utt.audio_path.resolve()
    shown = audio.relative_to(folder).as_posix() if audio.is_relative_to(folder) else str(audio)
    record = {
        "id": utt.id,
        "audio": shown,
        "text": utt.text,
        "speaker": utt.speaker,
        "duration": utt.duration_s,
    }
    record.update({k: v for k, v in utt.extra.items() if k not in CORE_FIELDS})
    return record
