"""Streaming-vs-offline word errors per utterance, for development on subsets: streams test-other mini
utterances with tiny.en (1 thread) and scores them beside the offline hypotheses an earlier
`weightwise stream --data` result already holds (no offline re-decode). Prints one line per
utterance with running totals; writes every hypothesis at the end."""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch

from weightwise import load_manifest, load_model
from weightwise.data import iter_audio
from weightwise.evaluate.normalize import normalize
from weightwise.evaluate.wer import word_errors
from weightwise.outputs import write_json_atomic
from weightwise.stream import StreamOptions
from weightwise.stream.evaluate import stream_utterance, word_latencies

DATA = os.path.join(os.environ.get("WEIGHTWISE_SHARED_DATA", "../shared/data"), "speech")
OFFLINE = "benchmarks/results/stream/tiny.en_test_other_1000ms_lowload.json"


def _errors(ref: str, hyp: str) -> tuple[int, int]:
    ref, hyp = normalize(ref), normalize(hyp)
    n = len(ref.split())
    return round(word_errors([ref], [hyp]).wer * n), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--offline", default=OFFLINE, help="a `weightwise stream --data` result (offline_hyp)")
    parser.add_argument("--every", type=int, default=1, help="every k-th utterance of the manifest")
    parser.add_argument(
        "--options", default="{}", help='StreamOptions fields as JSON, e.g. \'{"encoder_context": "auto"}\''
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    offline = {u["id"]: u["offline_hyp"] for u in json.load(open(args.offline))["utterances"]}
    options = StreamOptions(**json.loads(args.options))
    model = load_model("whisper-tiny.en")
    items = list(iter_audio(load_manifest(f"{DATA}/librispeech_test_other_mini")))[:: args.every]
    totals, latencies, rows = np.zeros(3, int), {"cpu": [], "none": []}, []
    for utt, samples in items:
        stream = stream_utterance(model, samples, options, None, utt.id)
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
