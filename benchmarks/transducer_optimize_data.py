"""Calibration and evaluation manifests for `weightwise optimize` on the FSDD transducer.

    python benchmarks/transducer_optimize_data.py --calib 60 --eval 100 --out WORK/

writes WORK/calib/manifest.jsonl (digit strings joined from TRAIN-split clips, seed 2, with no
transcripts: the optimizer uses the calibration audio untranscribed) and WORK/eval/manifest.jsonl
(digit strings from TEST-split clips, seed 1: the same strings as `benchmarks/transducer_fsdd.py`'s
strings WER). Strings: 3-8 digits, 50-400 ms gaps (`weightwise.train.DigitStrings`), no noise.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from weightwise.data import Manifest, load_manifest
from weightwise.train.digits import DigitStrings, clips_by_split, write_digit_strings

FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "fsdd_digits" / "manifest.jsonl"
CALIB_SEED, EVAL_SEED = 2, 1  # eval: transducer_fsdd.py's STRING_SEED


def split(manifest: Manifest, name: str) -> Manifest:
    return Manifest(tuple(u for u in manifest if u.extra.get("split") == name), f"{manifest.source} split={name}")


def untranscribed(path: Path) -> None:
    """Drop the `text` fields: the optimizer uses calibration audio without transcripts."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "text"}) + "\n" for r in lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(FSDD), help="FSDD manifest with `split` fields")
    parser.add_argument("--calib", type=int, default=60, help="train-split strings (calibration)")
    parser.add_argument("--eval", type=int, default=100, help="test-split strings (evaluation)")
    parser.add_argument("--out", required=True, help="folder for calib/ and eval/")
    args = parser.parse_args(argv)
    manifest, out = load_manifest(args.data), Path(args.out)
    paths = []
    for name, n, seed, folder in (("train", args.calib, CALIB_SEED, "calib"), ("test", args.eval, EVAL_SEED, "eval")):
        clips = clips_by_split(split(manifest, name))[name]
        paths.append(write_digit_strings(clips, DigitStrings(), n, seed, out / folder, id_prefix=f"{name}_string"))
    untranscribed(paths[0])
    calib, evaluation = paths
    print(calib, evaluation)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
