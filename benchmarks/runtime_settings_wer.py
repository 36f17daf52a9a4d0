"""WER of whisper-tiny.en (fp32) with each plan runtime setting simulated in the decode.

    python benchmarks/runtime_settings_wer.py MANIFEST 30 float,ctx,kv8,act8,all

Prints one line per setting: name, WER %, wall seconds (greedy, max 224 new tokens, 1 thread).
"""

from __future__ import annotations

import sys
import time

import torch

from weightwise.data import iter_audio, load_manifest
from weightwise.decode import DecodingOptions, transcribe
from weightwise.evaluate.normalize import normalize
from weightwise.evaluate.wer import word_errors
from weightwise.models import load_model
from weightwise.models.runtime import RuntimeSettings, apply_runtime

SETTINGS = {
    "float": None,
    "kv8": RuntimeSettings(kv_precision="int8"),
    "act8": RuntimeSettings(activation_precision="int8"),
    "ctx": RuntimeSettings(encoder_context="auto"),
    "all": RuntimeSettings("int8", "int8", "auto"),
}


def main() -> None:
    torch.set_num_threads(1)
    data, limit, names = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
    audio = list(iter_audio(load_manifest(data).head(limit)))
    for name in names:
        model = load_model("whisper-tiny.en")
        apply_runtime(model, SETTINGS[name])
        start, refs, hyps = time.time(), [], []
        for utt, samples in audio:
            refs.append(normalize(utt.text))
            hyps.append(normalize(transcribe(model, samples, DecodingOptions(max_new_tokens=224)).text))
        print(name, round(100 * word_errors(refs, hyps).wer, 2), round(time.time() - start), flush=True)


if __name__ == "__main__":
    main()
