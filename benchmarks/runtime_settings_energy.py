"""Modeled energy of whisper-tiny.en on a device under each cache/activation/attention setting: one
trace per weight format (fp16 dense, int8 and int4-g64 plans run at fp16), priced four ways.

    python benchmarks/runtime_settings_energy.py 10   # first 10 test-other utterances, jetson-orin-nano
"""

from __future__ import annotations

import sys

import torch

from weightwise.compress.loading import load_model_with_plan
from weightwise.data import load_manifest
from weightwise.decode import DecodingOptions
from weightwise.models import load_model
from weightwise.profile.device import load_device
from weightwise.profile.profile import analyze, trace_manifest

PLANS = {"fp16": None, "int8": "benchmarks/plans/int8-channel.json", "int4": "benchmarks/plans/int4-group64.json"}
SETTINGS = [(None, None, False), (None, None, True), ("int8", "int8", False), ("int8", "int8", True)]


def main() -> None:
    torch.set_num_threads(1)
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    manifest = load_manifest("../shared/data/speech/librispeech_test_other_mini").head(limit)
    device = load_device(sys.argv[2] if len(sys.argv) > 2 else "jetson-orin-nano")
    for name, plan in PLANS.items():
        if plan is None:
            model = load_model("whisper-tiny.en", precision="fp16")
        else:
            model = load_model_with_plan("whisper-tiny.en", plan=plan)
            model.network.to(torch.float16)
        trace, _results, _measured = trace_manifest(model, manifest, DecodingOptions(max_new_tokens=224), None, None)
        for kv, act, fused in SETTINGS:
            p = analyze(trace, device, kv_dtype=kv, act_dtype=act, fused_attention=fused)
            parts = {k: round(v * 1e3, 3) for k, v in p.component_energy_j_per_audio_s.items()}
            print(name, f"kv={kv}", f"act={act}", f"fused={fused}", round(p.energy_j_per_audio_s * 1e3, 3), parts)


if __name__ == "__main__":
    main()
