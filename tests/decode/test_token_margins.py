"""benchmarks/token_margins.py: where a variant leaves the float model's greedy path, and fp32's margin there."""

from __future__ import annotations

import pytest
import torch

from weightwise.decode import transcribe
from weightwise.models import load_model


def test_margin_is_the_chosen_tokens_lead_over_the_best_other(benchmark_script):
    logprobs = torch.tensor([[-0.1, -2.0, -3.0], [-1.0, -0.5, -4.0], [-0.7, -0.7, -9.0]])
    out = benchmark_script("token_margins").margins(logprobs, torch.tensor([0, 0, 1]))
    assert out.tolist() == pytest.approx([1.9, -0.5, 0.0])


def test_the_float_model_against_itself_never_flips_and_keeps_its_own_greedy_choices(
    benchmark_script, tiny_model, sample_audio
):
    """Teacher-forced on its own greedy path, every step's choice leads (margin >= 0, up to the
    step-decoder vs full-forward rounding) and the variant's margins equal fp32's."""
    script = benchmark_script("token_margins")
    for utt, audio in sample_audio[:2]:
        row = script.utterance_margins(tiny_model, tiny_model, utt.id, audio)
        assert row.flip is None
        assert row.min_fp32_margin_nats > -2e-3
        assert row.n_steps == len(transcribe(tiny_model, audio).tokens) + 1  # text tokens + end-of-text
        assert max(row.abs_shifts_nats) == 0.0
    summary = script.summarize([row])
    assert summary["n_flipped"] == 0 and summary["median_abs_shift_nats"] == 0.0


def test_a_flip_is_where_the_variants_own_greedy_decode_leaves_the_float_path(
    benchmark_script, tiny_model, sample_audio
):
    """int8 on the bundled samples: no flip exactly when int8's greedy tokens equal fp32's; at a flip
    the two decodes agree up to that step and differ on it."""
    script = benchmark_script("token_margins")
    int8 = load_model("whisper-tiny.en", precision="int8")
    for utt, audio in sample_audio:
        row = script.utterance_margins(tiny_model, int8, utt.id, audio)
        base, variant = transcribe(tiny_model, audio).tokens, transcribe(int8, audio).tokens
        if row.flip is None:
            assert variant == base
        else:
            step = row.flip.step
            assert variant[:step] == base[:step] and variant[step : step + 1] != base[step : step + 1]
            assert row.flip.variant_margin_nats < 0 <= row.flip.fp32_margin_nats + 2e-3
