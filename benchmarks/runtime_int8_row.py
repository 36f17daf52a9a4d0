"""One utterance of `runtime_int8.py`'s matrix re-decoded by our fp32, our `--precision int8` and
faster-whisper int8, on the same seeded noise mixture, with each transcript's word errors: to see
whether a cell's gap is int8 or the model's own decode (e.g. a loop our fp32 makes too).

    python benchmarks/runtime_int8_row.py --model whisper-base --noise babble --snr 5 --row 22
"""

from __future__ import annotations

from pathlib import Path

from weightwise.audio.noise import add_noise, cell_seed
from weightwise.data import iter_audio, load_manifest
from weightwise.data.noise import resolve_noise
from weightwise.decode import transcribe
from weightwise.evaluate.normalize import normalize
from weightwise.evaluate.peer import faster_whisper_runner
from weightwise.evaluate.runtime import set_threads
from weightwise.evaluate.wer import word_errors
from weightwise.models import load_model

from _common import benchmark_parser


def main() -> None:
    parser = benchmark_parser(__doc__.splitlines()[0], limit=0)
    parser.add_argument("--noise", default="babble", help="as runtime_int8.py's --noise (one)")
    parser.add_argument("--snr", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--row", type=int, required=True, help="0-based row of the manifest")
    args = parser.parse_args()
    set_threads(args.threads)
    utt, samples = list(iter_audio(load_manifest(args.data).head(args.row + 1)))[args.row]
    source = resolve_noise(args.noise)
    mixed = add_noise(samples, source, args.snr, cell_seed(utt.id, source.name, args.snr, args.seed))
    fp32 = load_model(args.model)
    int8 = load_model(args.model, precision="int8")
    systems = {
        "weightwise fp32": lambda a: transcribe(fp32, a).text,
        "weightwise --precision int8": lambda a: transcribe(int8, a).text,
        "faster-whisper int8": faster_whisper_runner(Path(fp32.info.source), "int8", args.threads),
    }
    reference = normalize(utt.text)
    print(f"{utt.id}, {source.name} {args.snr:g} dB\nreference: {reference}")
    for name, run in systems.items():
        hypothesis = normalize(run(mixed))
        counts = word_errors([reference], [hypothesis])
        errors = counts.substitutions + counts.deletions + counts.insertions
        print(f"{name:28s} {errors:3d} errors | {hypothesis}")


if __name__ == "__main__":
    main()
