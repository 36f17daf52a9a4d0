"""Cost of profiling vs a plain transcription of the same audio, measured side by side.

Plain and traced transcriptions alternate utterance by utterance (order swapped every utterance)
so foreign load on the machine hits both alike. Target (issue 3): traced / plain <= 1.5.

    python benchmarks/profile_overhead.py --limit 20 --out benchmarks/results/profile_overhead.json
"""

from __future__ import annotations

import time
from pathlib import Path

from _common import benchmark_parser

from weightwise.data import load_manifest
from weightwise.decode import transcribe
from weightwise.evaluate.evaluate import iter_audio
from weightwise.evaluate.runtime import set_threads, versions
from weightwise.models import load_model
from weightwise.outputs import write_json_atomic
from weightwise.profile.trace import Tracer



def main() -> None:
    parser = benchmark_parser(__doc__, limit=20)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    set_threads(args.threads)
    model = load_model(args.model)
    items = list(iter_audio(load_manifest(args.data).head(args.limit)))
    tracer = Tracer(model.network)

    def plain(samples):
        transcribe(model, samples)

    def traced(samples):
        with tracer:
            transcribe(model, samples, observer=tracer)

    runners = {"plain": plain, "traced": traced}
    for run in runners.values():
        run(items[0][1])  # warm-up
    seconds = dict.fromkeys(runners, 0.0)
    for i, (_utt, samples) in enumerate(items):
        for name in (("plain", "traced") if i % 2 == 0 else ("traced", "plain")):
            start = time.perf_counter()
            runners[name](samples)
            seconds[name] += time.perf_counter() - start
    audio_s = sum(len(s) for _, s in items) / 16000
    ratio = seconds["traced"] / seconds["plain"]
    write_json_atomic(Path(args.out), {"model": args.model, "n_utterances": len(items), "audio_s": audio_s,
                                       "plain_s": seconds["plain"], "traced_s": seconds["traced"],
                                       "overhead_ratio": ratio, "target_ratio": 1.5, "versions": versions()})
    print(f"{len(items)} utterances, {audio_s:.1f} s audio: plain {seconds['plain']:.2f} s, "
          f"traced {seconds['traced']:.2f} s, ratio {ratio:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
