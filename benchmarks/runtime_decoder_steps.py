"""Our decoder steps (`weightwise.models.whisper_step.DecoderSteps`) vs transformers' decoder forward:
transcription time and transcript agreement on the same utterances, greedy and beam search.

Both paths run the same model in one process, alternating utterance by utterance (the order flips
each utterance), so load on this shared machine hits both alike; the ratio is our path's total
time over transformers'.

    python benchmarks/runtime_decoder_steps.py --model whisper-tiny.en --precision int8 --limit 20 \
        --out benchmarks/results/runtime/decoder_steps_tiny_int8.json
"""

from __future__ import annotations

import time
from pathlib import Path

import weightwise.decode.search as search
from weightwise.data import iter_audio, load_manifest
from weightwise.decode import DecodingOptions, transcribe
from weightwise.evaluate.normalize import normalize
from weightwise.evaluate.runtime import set_threads, versions
from weightwise.models import load_model
from weightwise.models.whisper_step import supports
from weightwise.outputs import write_json_atomic

from _common import benchmark_parser


def timed(model, audio, options: DecodingOptions, ours: bool) -> tuple[str, float]:
    search.supports = supports if ours else (lambda _decoder: False)
    start = time.perf_counter()
    text = transcribe(model, audio, options).text
    return text, time.perf_counter() - start


def compare(model, items, options: DecodingOptions) -> dict:
    seconds = {"ours": 0.0, "transformers": 0.0}
    same = same_normalized = 0
    timed(model, items[0], options, True)  # warm-up, both paths
    timed(model, items[0], options, False)
    for index, audio in enumerate(items):
        order = (True, False) if index % 2 == 0 else (False, True)
        texts = {}
        for ours in order:
            text, elapsed = timed(model, audio, options, ours)
            texts[ours] = text
            seconds["ours" if ours else "transformers"] += elapsed
        same += texts[True] == texts[False]
        same_normalized += normalize(texts[True]) == normalize(texts[False])
    search.supports = supports
    return {
        "beam_size": options.beam_size,
        "seconds": seconds,
        "time_ratio_ours_over_transformers": seconds["ours"] / seconds["transformers"],
        "identical_transcripts": same,
        "identical_after_normalization": same_normalized,
        "n_utterances": len(items),
    }


def main() -> None:
    parser = benchmark_parser(__doc__.splitlines()[0], limit=20)
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--beams", default="1,5", help="comma-separated beam sizes")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    set_threads(args.threads)
    model = load_model(args.model, precision=args.precision)
    items = [audio for _utt, audio in iter_audio(load_manifest(args.data).head(args.limit))]
    rows = []
    for beam in (int(b) for b in args.beams.split(",")):
        row = compare(model, items, DecodingOptions(beam_size=beam))
        rows.append(row)
        print(
            f"beam {beam}: ours / transformers time {row['time_ratio_ours_over_transformers']:.3f}, identical "
            f"{row['identical_transcripts']}/{len(items)} ({row['identical_after_normalization']} normalized)",
            flush=True,
        )
    header = {"model": args.model, "precision": args.precision, "data": args.data, "threads": args.threads}
    write_json_atomic(Path(args.out), {**header, "rows": rows, "versions": versions()})


if __name__ == "__main__":
    main()
