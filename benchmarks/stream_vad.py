"""VAD gating on audio with pauses: the first utterances of LibriSpeech test-other mini joined by
2-4 s gaps (half digital silence, half pink noise at -50 dBFS), seeded; streamed with and without
silero-vad. Writes decodes, invocations and modeled energy per audio-second (jetson-orin-nano)."""

from __future__ import annotations

import argparse
import json
import os

import torch

from weightwise import load_device, load_manifest, load_model
from weightwise.data import iter_audio
from weightwise.outputs import write_json_atomic
from weightwise.stream import StreamOptions
from weightwise.stream.gating import vad_savings
from weightwise.stream.pauses import make_paused_audio

DATA = os.path.join(os.environ.get("WEIGHTWISE_SHARED_DATA", "../shared/data"), "speech")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--n-utterances", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-ms", type=int, default=1000)
    parser.add_argument("--device", default="jetson-orin-nano")
    args = parser.parse_args()
    torch.set_num_threads(1)
    manifest = load_manifest(f"{DATA}/librispeech_test_other_mini/manifest.jsonl").head(args.n_utterances)
    clips = [(utt.text, samples) for utt, samples in iter_audio(manifest)]
    audio = make_paused_audio(clips, seed=args.seed, gap_s=(2.0, 4.0))
    model = load_model("whisper-tiny.en")
    result = vad_savings(model, audio, load_device(args.device), StreamOptions(chunk_ms=args.chunk_ms))
    result.update(ids=[utt.id for utt in manifest], seed=args.seed, gaps="2-4 s, half silence, half pink -50 dBFS")
    write_json_atomic(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("speech_s", "ref")}, indent=1)[:3000])


if __name__ == "__main__":
    main()
