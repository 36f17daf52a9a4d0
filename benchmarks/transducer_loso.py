"""Leave-one-speaker-out WER of the FSDD digits transducer: one training per speaker with that
speaker's clips held out, then isolated-digit WER on the held-out speaker's clips.

    python benchmarks/transducer_loso.py --runs runs/transducer_loso --steps 800 \
        --out benchmarks/results/transducer/loso.json

Each training is the `train-transducer` recipe (`TrainConfig` defaults, digit strings over noise
from `--noise`) on the train split (recordings 5-9) of the other 5 speakers; the held-out speaker's
test split (recordings 0-4, as in the main results) and train split (5-9) are both unseen, so both
are scored. A control run (`none`) trains the same recipe on all 6 speakers' train split and is
scored per speaker on their test split, so the table separates "unseen speaker" from "short recipe".
Resumable: a finished speaker (its `eval.json`) is not redone, a killed training continues from its
checkpoint when the same command is run again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import jiwer
import numpy as np
import torch

from weightwise.data import Manifest, iter_audio, load_manifest
from weightwise.decode import DecodingOptions, transcribe
from weightwise.models import load_model
from weightwise.outputs import write_json_atomic
from weightwise.train.digits import DigitStrings
from weightwise.train.transducer import TrainConfig, train_transducer

FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "fsdd_digits" / "manifest.jsonl"
CONTROL = "none"


def held_out_manifest(manifest: Manifest, speaker: str) -> Manifest:
    """The manifest with the held-out speaker's splits renamed `heldout_<split>` (never trained on)."""
    utterances = []
    for utt in manifest:
        split = str(utt.extra.get("split", ""))
        if utt.speaker == speaker:
            split = f"heldout_{split}"
        utterances.append(dataclasses.replace(utt, extra={**utt.extra, "split": split}))
    return Manifest(tuple(utterances), f"{manifest.source} without {speaker}")


def _wer(model, manifest: Manifest, beam_size: int) -> dict:
    refs, hyps = [], []
    options = DecodingOptions(beam_size=beam_size)
    for utt, samples in iter_audio(manifest):
        refs.append(utt.text)
        hyps.append(transcribe(model, samples, options).text or "<empty>")
    out = jiwer.process_words(refs, hyps)
    errors = out.substitutions + out.deletions + out.insertions
    return {"n": len(refs), "n_words": out.hits + out.substitutions + out.deletions, "errors": errors, "wer": out.wer}


def scored(model, manifest: Manifest, splits: dict[str, str], beam_sizes: tuple[int, ...]) -> dict:
    """WER per (label, beam) over the utterances of each split in `splits` (label -> split)."""
    out = {}
    for label, split in splits.items():
        subset = Manifest(tuple(u for u in manifest if u.extra.get("split") == split), f"{manifest.source} {split}")
        out[label] = {f"beam{b}": _wer(model, subset, b) for b in beam_sizes}
    return out


def run_speaker(args, manifest: Manifest, speaker: str, speakers: list[str]) -> dict:
    folder = Path(args.runs) / speaker
    done = folder / "eval.json"
    if done.is_file():
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    data = held_out_manifest(manifest, speaker) if speaker != CONTROL else manifest
    data.to_jsonl(folder / "manifest.jsonl")
    config = TrainConfig(
        data=str(folder / "manifest.jsonl"),
        out=str(folder),
        strings=DigitStrings(noise_prob=0.5 if args.noise else 0.0, repeat_prob=args.repeat_prob),
        string_share=args.string_share,
        steps=args.steps,
        noise=args.noise or None,
        warmup_steps=min(150, args.steps),
        seed=args.seed,
    )
    summary = train_transducer(config)
    print(
        f"{speaker}: trained {summary.steps} steps in {summary.train_s:.0f} s, loss {summary.final_loss:.3f}",
        flush=True,
    )
    model = load_model(str(folder / "model"))
    beams = tuple(args.beam_sizes)
    if speaker == CONTROL:  # per speaker, on the test split (the only unseen clips)
        row = {}
        for name in speakers:
            subset = Manifest(tuple(u for u in manifest if u.speaker == name), name)
            row[name] = scored(model, subset, {"test": "test"}, beams)
    else:
        row = scored(model, data, {"test": "heldout_test", "train": "heldout_train"}, beams)
    result = {"speaker": speaker, "train_s": summary.train_s, "final_loss": summary.final_loss, "wer": row}
    write_json_atomic(done, result)
    return result


def table(results: dict, speakers: list[str], beam: int) -> list[dict]:
    key, rows = f"beam{beam}", []
    control = results.get(CONTROL, {}).get("wer", {})
    for name in speakers:
        held = results[name]["wer"]
        errors = held["test"][key]["errors"] + held["train"][key]["errors"]
        words = held["test"][key]["n_words"] + held["train"][key]["n_words"]
        rows.append(
            {
                "speaker": name,
                "heldout_test_wer": held["test"][key]["wer"],
                "heldout_all_wer": errors / words,
                "control_test_wer": control[name]["test"][key]["wer"] if name in control else None,
            }
        )
    return rows


def markdown(summary: dict, beams: list[int]) -> str:
    """Per held-out speaker isolated-digit WER, one column pair per beam size, and the mean."""
    head = "| held-out speaker | " + " | ".join(
        f"test split (50), {_search(b)} | all 100 clips, {_search(b)} | control (trained on all 6), {_search(b)}"
        for b in beams
    )
    lines = [head + " |", "|---" * (1 + 3 * len(beams)) + "|"]
    per_beam = [summary[f"beam{b}"]["per_speaker"] for b in beams]
    for i, row in enumerate(per_beam[0]):
        cells = []
        for rows in per_beam:
            r = rows[i]
            cells += [_pct(r["heldout_test_wer"]), _pct(r["heldout_all_wer"]), _pct(r["control_test_wer"])]
        lines.append(f"| {row['speaker']} | " + " | ".join(cells) + " |")
    means = []
    for b in beams:
        s = summary[f"beam{b}"]
        means += [_pct(s["mean_heldout_test_wer"]), _pct(s["mean_heldout_all_wer"]), _pct(s["mean_control_test_wer"])]
    lines.append("| **mean** | " + " | ".join(f"**{m}**" for m in means) + " |")
    return "\n".join(lines) + "\n"


def _search(beam: int) -> str:
    return "greedy" if beam == 1 else f"beam {beam}"


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(FSDD))
    parser.add_argument("--runs", required=True, help="folder for the trainings (resumable)")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--noise", default=str(FSDD.parents[2] / "noise"), help="'' = no noise")
    parser.add_argument("--repeat-prob", type=float, default=0.0)
    parser.add_argument("--string-share", type=float, default=0.7, help="0 = isolated clips only (cheaper steps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--beam-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--speakers", nargs="*", default=None, help="default: all, then the control")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    parser.add_argument("--table", default=None, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    manifest = load_manifest(args.data)
    speakers = sorted({u.speaker for u in manifest})
    results = {}
    for speaker in args.speakers if args.speakers is not None else [*speakers, CONTROL]:
        results[speaker] = run_speaker(args, manifest, speaker, speakers)
    summary = {
        "steps": args.steps,
        "string_share": args.string_share,
        "command": " ".join(["python", *sys.argv]),
        "runs": results,
    }
    held_out = [s for s in speakers if s in results]  # all of them, unless --speakers named fewer
    summary["held_out_speakers"] = held_out
    if held_out:
        for beam in args.beam_sizes:
            rows = table(results, held_out, beam)
            summary[f"beam{beam}"] = {
                "n_speakers": len(rows),
                "per_speaker": rows,
                "mean_heldout_test_wer": float(np.mean([r["heldout_test_wer"] for r in rows])),
                "mean_heldout_all_wer": float(np.mean([r["heldout_all_wer"] for r in rows])),
                "mean_control_test_wer": None
                if any(r["control_test_wer"] is None for r in rows)
                else float(np.mean([r["control_test_wer"] for r in rows])),
            }
        if args.table:
            Path(args.table).write_text(markdown(summary, args.beam_sizes))
    write_json_atomic(args.out, summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
