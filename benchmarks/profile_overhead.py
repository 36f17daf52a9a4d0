"""Cost of profiling vs a plain transcription of the same audio, measured side by side.

Plain and traced transcriptions alternate utterance by utterance (order swapped every utterance)
so foreign load on the machine hits both alike. Target (issue 3): traced / plain <= 1.5.

    python benchmarks/profile_overhead.py --limit 20 --out benchmarks/results/profile_overhead.json
"""

from __future__ import annotations

from pathlib import Path

from weightwise.audio import SAMPLE_RATE
from weightwise.data import iter_audio, load_manifest
from weightwise.decode import transcribe
from weightwise.evaluate.runtime import set_threads, versions
from weightwise.evaluate.timing import warm_up_and_time
from weightwise.models import load_model
from weightwise.outputs import write_json_atomic
from weightwise.profile.trace import Tracer

from _common import benchmark_parser


def main() -> None:
    parser = benchmark_parser(__doc__, limit=20)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    set_threads(args.threads)
    model = load_model(args.model)
    items = list(iter_audio(load_manifest(args.data).head(args.limit)))
    tracer = Tracer(model.network)

    def plain(samples, _id):
        transcribe(model, samples)

    def traced(samples, _id):
        with tracer:
            transcribe(model, samples, observer=tracer)

    seconds = {"plain": 0.0, "traced": 0.0}
    for call in warm_up_and_time({"plain": plain, "traced": traced}, items):  # order swapped every utterance
        seconds[call.runner] += call.compute_s
    audio_s = sum(len(s) for _, s in items) / SAMPLE_RATE
    ratio = seconds["traced"] / seconds["plain"]
    write_json_atomic(
        Path(args.out),
        {
            "model": args.model,
            "n_utterances": len(items),
            "audio_s": audio_s,
            "plain_s": seconds["plain"],
            "traced_s": seconds["traced"],
            "overhead_ratio": ratio,
            "target_ratio": 1.5,
            "versions": versions(),
        },
    )
    print(
        f"{len(items)} utterances, {audio_s:.1f} s audio: plain {seconds['plain']:.2f} s, "
        f"traced {seconds['traced']:.2f} s, ratio {ratio:.2f} (target <= 1.5)"
    )


if __name__ == "__main__":
    main()
