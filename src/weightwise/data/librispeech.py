"""Read a LibriSpeech-layout folder straight into a `Manifest`, without writing a JSONL first.

LibriSpeech ships `<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`, one "UTT-ID TEXT..." line
per utterance, with `<UTT-ID>.flac` next to the transcript. Copies that drop the chapter level
(`<speaker>/<UTT-ID>.flac` plus the chapter's `.trans.txt` in the same folder, as in
`shared/data/speech/librispeech_test_clean_mini/audio/1089/`) read the same way, because only
"audio next to its transcript" is assumed. Any folder depth above that is fine.
"""

from __future__ import annotations

import os
from pathlib import Path

from weightwise.audio import audio_duration_s
from weightwise.data.manifest import Manifest, Utterance
from weightwise.errors import InputError

__all__ = ["read_librispeech_dir"]

# LibriSpeech is FLAC; a WAV next to the transcript (a converted copy) is accepted as well.
_AUDIO_SUFFIXES = (".flac", ".wav")


def read_librispeech_dir(root: str | os.PathLike) -> Manifest:
    """Collect every utterance of every `*.trans.txt` under `root`, in sorted file order.

    Each utterance's speaker is the first dash-separated part of its id and its duration is read
    from the audio header. `extra` holds `chapter` (second part of the id) when the id has one.

    Raises:
        InputError: `root` is not a folder, has no `*.trans.txt`, a transcript line has no text,
            an id repeats, or an utterance's audio file is missing (naming the transcript file
            and line).
    """
    folder = Path(root)
    if not folder.is_dir():
        problem = "not found" if not folder.exists() else "not a directory"
        raise InputError(f"{folder}: LibriSpeech folder {problem}")
    transcripts = sorted(folder.rglob("*.trans.txt"))
    if not transcripts:
        raise InputError(f"{folder}: no *.trans.txt transcript files found (not LibriSpeech)")
    utterances: list[Utterance] = []
    first_seen: dict[str, str] = {}
    for transcript in transcripts:
        for utt, where in _read_transcript(transcript):
            if utt.id in first_seen:
                raise InputError(f"{where}: duplicate id '{utt.id}' (also in {first_seen[utt.id]})")
            first_seen[utt.id] = where
            utterances.append(utt)
    if not utterances:
        raise InputError(f"{folder}: the *.trans.txt files hold no utterances")
    return Manifest(tuple(utterances), str(folder))


def _read_transcript(transcript: Path) -> list[tuple[Utterance, str]]:
    """The utterances of one `.trans.txt`, each with its "<file>:<line>" for messages."""
    try:
        lines = transcript.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{transcript}: transcript is not UTF-8 text") from None
    result = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{transcript}:{lineno}"
        utt_id, *words = line.split()
        if not words:
            raise InputError(f"{where}: transcript line has no text for '{utt_id}'")
        result.append((_utterance(utt_id, " ".join(words), transcript.parent, where), where))
    return result


def _utterance(utt_id: str, text: str, folder: Path, where: str) -> Utterance:
    """Find the audio next to the transcript and build the utterance."""
    candidates = [folder / f"{utt_id}{suffix}" for suffix in _AUDIO_SUFFIXES]
    audio = next((path for path in candidates if path.is_file()), None)
    if audio is None:
        raise InputError(f"{where}: audio file not found for '{utt_id}': {candidates[0]}")
    parts = utt_id.split("-")
    extra = {"chapter": parts[1]} if len(parts) >= 3 else {}
    return Utterance(
        id=utt_id,
        audio_path=audio.resolve(),
        text=text,
        speaker=parts[0],
        duration_s=audio_duration_s(audio),
        extra=extra,
    )
