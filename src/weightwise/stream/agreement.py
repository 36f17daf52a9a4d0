"""LocalAgreement-2 (Macháček et al., 2023, "Turning Whisper into Real-Time Transcription System"):
a word is confirmed once two consecutive hypotheses over the growing buffer agree on it.

Each new hypothesis (words with times in the stream) first drops the words that end before the last
confirmed word (they belong to audio already confirmed) and any leading words that repeat the tail
of the confirmed text (up to 5 words: Whisper often re-emits the end of its prompt). The longest
common prefix of the previous and the new hypothesis is then confirmed. Words are compared by a
key without case or punctuation ("Well," and "well" agree); the newer spelling is kept.
"""

from __future__ import annotations

import re

from weightwise.stream.protocol import Word

MAX_OVERLAP_WORDS = 5  # longest repeat of the confirmed tail removed from a hypothesis' head
OVERLAP_TOLERANCE_S = 1.0  # a hypothesis that starts this close to the last confirmed end may repeat it
EARLY_START_TOLERANCE_S = 0.1  # words starting this much before the last confirmed end are still new


def word_key(text: str) -> str:
    """Case- and punctuation-free form of a word, used to compare hypotheses."""
    return re.sub(r"[^\w']", "", text.lower())


class HypothesisBuffer:
    """Confirmed words so far, and the previous hypothesis waiting for agreement."""

    def __init__(self):
        self.confirmed: list[Word] = []
        self.previous: list[Word] = []  # the last hypothesis, minus what it confirmed
        self.latest: list[Word] = []  # the newest hypothesis, minus what is confirmed

    @property
    def last_end_s(self) -> float:
        return self.confirmed[-1].end_s if self.confirmed else 0.0

    def _new_part(self, words: list[Word]) -> list[Word]:
        words = [w for w in words if w.start_s > self.last_end_s - EARLY_START_TOLERANCE_S]
        if words and self.confirmed and abs(words[0].start_s - self.last_end_s) < OVERLAP_TOLERANCE_S:
            for n in range(min(MAX_OVERLAP_WORDS, len(words), len(self.confirmed)), 0, -1):
                tail = [word_key(w.text) for w in self.confirmed[-n:]]
                if tail == [word_key(w.text) for w in words[:n]]:
                    return words[n:]
        return words

    def insert(self, words: list[Word]) -> list[Word]:
        """Take a new hypothesis; return the words it confirms (agreement with the previous one)."""
        new = self._new_part(words)
        agreed = 0
        while agreed < min(len(new), len(self.previous)) and word_key(new[agreed].text) == word_key(
            self.previous[agreed].text
        ):
            agreed += 1
        confirmed = self._append(new[:agreed])
        self.previous = self.latest = new[agreed:]
        return confirmed

    def confirm_all(self) -> list[Word]:
        """End of the stream: the newest hypothesis is final."""
        rest, self.previous, self.latest = self.latest, [], []
        return self._append(rest)

    def _append(self, words: list[Word]) -> list[Word]:
        """Confirm `words`, keeping times monotonic: times from different decodes may overlap by a
        frame or two, so a word starts no earlier than the confirmed word before it ends."""
        out = []
        for w in words:
            start = max(w.start_s, self.last_end_s)
            self.confirmed.append(Word(w.text, start, max(w.end_s, start)))
            out.append(self.confirmed[-1])
        return out

    def reset_hypothesis(self) -> None:
        """Forget the unconfirmed hypotheses (after a VAD-detected pause the buffer starts afresh)."""
        self.previous, self.latest = [], []
