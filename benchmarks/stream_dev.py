"""Streaming-vs-offline word errors per utterance, for development on subsets: streams test-other mini
utterances with tiny.en (1 thread) and scores them beside the offline hypotheses an earlier
`weightwise stream --data` result already holds (no offline re-decode). Prints one line per
utterance with running totals; writes every hypothesis at the end.

`--cache FILE` memoizes every decode (words + its CPU seconds) by (utterance, buffer start, end,
prompt, encoder context): a decode is a pure function of those, so a policy change (agreement,
trimming, finish) re-runs only the decodes whose inputs it changes, and the latencies are simulated
with the CPU time the decode took when it ran (`--ids 0:50` selects manifest rows)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import time

import numpy as np
import torch

from weightwise import load_manifest, load_model
from weightwise.data import iter_audio
from weightwise.evaluate.normalize import normalize
from weightwise.evaluate.wer import word_errors
from weightwise.outputs import write_json_atomic
from weightwise.stream import StreamOptions
from weightwise.stream import whisper as stream_whisper
from weightwise.stream.evaluate import stream_utterance, word_latencies

DATA = os.path.join(os.environ.get("WEIGHTWISE_SHARED_DATA", "../shared/data"), "speech")
OFFLINE = "benchmarks/results/stream/tiny.en_test_other_1000ms_lowload.json"


def _errors(ref: str, hyp: str) -> tuple[int, int]:
    ref, hyp = normalize(ref), normalize(hyp)
    n = len(ref.split())
    return round(word_errors([ref], [hyp]).wer * n), n


class DecodeCache:
    """Memoizes `WhisperStream._decode`; a hit is charged the CPU time of the decode that filled it."""

    def __init__(self, path: str | None):
        self.path, self.entries, self.dirty = path, {}, False
        if path and os.path.exists(path):
            with open(path, "rb") as f:
                self.entries = pickle.load(f)
        self.original = stream_whisper.WhisperStream._decode
        stream_whisper.WhisperStream._decode = lambda stream, end: self._decode(stream, end)
        self.charged: list[float] = []  # per decode of the current stream: CPU seconds not measured

    def _decode(self, stream, end: int):
        key = (stream.file_id, stream.buffer_start, end, stream._prompt(), stream.options.encoder_context)
        if key in self.entries:
            words, cpu_s = self.entries[key]
            self.charged.append(cpu_s)
            return list(words)
        began = time.process_time()
        words = self.original(stream, end)
        self.entries[key], self.dirty = (tuple(words), time.process_time() - began), True
        self.charged.append(0.0)
        return words

    def stream(self, model, samples, options, file_id):
        self.charged = []
        stream = stream_utterance(model, samples, options, None, file_id)
        decodes = iter(self.charged)
        stream.steps = [
            step if step.skipped else dataclasses.replace(step, cpu_s=step.cpu_s + next(decodes))
            for step in stream.steps
        ]
        return stream

    def save(self) -> None:
        if self.path and self.dirty:
            with open(self.path + ".tmp", "wb") as f:
                pickle.dump(self.entries, f)
            os.replace(self.path + ".tmp", self.path)
            self.dirty = False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--offline", default=OFFLINE, help="a `weightwise stream --data` result (offline_hyp)")
    parser.add_argument("--ids", default=":", help="manifest rows as a Python slice, e.g. 0:50")
    parser.add_argument("--cache", help="decode cache file (pickle; created when missing)")
    parser.add_argument(
        "--options", default="{}", help='StreamOptions fields as JSON, e.g. \'{"encoder_context": "auto"}\''
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    offline = {u["id"]: u["offline_hyp"] for u in json.load(open(args.offline))["utterances"]}
    options = StreamOptions(**json.loads(args.options))
    model = load_model("whisper-tiny.en")
    rows_slice = slice(*[int(x) if x else None for x in args.ids.split(":")])
    items = list(iter_audio(load_manifest(f"{DATA}/librispeech_test_other_mini")))[rows_slice]
    cache = DecodeCache(args.cache)
    totals, latencies, rows = np.zeros(3, int), {"cpu": [], "none": []}, []
    for utt, samples in items:
        stream = cache.stream(model, samples, options, utt.id)
        cache.save()
        hyp = stream.result.confirmed_text
        (streamed, n), (off, _) = _errors(utt.text, hyp), _errors(utt.text, offline[utt.id])
        totals += (streamed, off, n)
        for clock in latencies:
            latencies[clock] += word_latencies(stream, clock)
        rows.append({"id": utt.id, "ref": utt.text, "hyp": hyp, "offline_hyp": offline[utt.id], "errors": streamed})
        s, o, words = totals
        print(
            f"{utt.id} str={streamed} off={off} n={n} cum: {100 * s / words:.2f} vs {100 * o / words:.2f}", flush=True
        )
    s, o, words = totals
    summary = {"n_utterances": len(rows), "words": int(words), "wer": s / words, "offline_wer": o / words}
    for clock, values in latencies.items():
        summary[f"{clock}_latency_median_s"] = float(np.median(values))
        summary[f"{clock}_latency_p90_s"] = float(np.percentile(values, 90))
    print(json.dumps(summary))
    write_json_atomic(args.out, {**summary, "options": json.loads(args.options), "utterances": rows})


if __name__ == "__main__":
    main()
