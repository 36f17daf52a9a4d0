"""weightwise.report.findings: each verdict of paper 2's findings follows the numbers it is given."""

from weightwise.bench.row import BenchRow
from weightwise.report.findings import paper2_findings


def cell(model, precision, energy, wer, noise=None, snr=None, nbytes=100):
    return BenchRow(
        "weightwise",
        model,
        precision,
        None,
        noise,
        snr,
        wer,
        rtf=0.1,
        energy_j_per_audio_s=energy,
        model_bytes=nbytes,
        device="d",
    )


def matrix(int8_energy, base_noisy_wer):
    rows = []
    for model, scale, clean_wer, noisy in (("tiny", 1.0, 0.15, 0.40), ("base", 2.0, 0.11, base_noisy_wer)):
        for precision, energy, nbytes in (("fp32", 0.02, 400), ("fp16", 0.01, 200), ("int8", int8_energy, 100)):
            rows.append(cell(model, precision, scale * energy, clean_wer, nbytes=scale * nbytes))
            rows.append(cell(model, precision, scale * energy, noisy, "white", 7.5, scale * nbytes))
            rows.append(cell(model, precision, scale * energy, 0.9, "white", 0.0, scale * nbytes))  # out of band
    return rows


def lines_with(text, start):
    return [line for line in text.splitlines() if line.startswith(start)]


def test_int8_at_fp16_energy_holds_and_base_more_robust_everywhere_refutes_finding_3():
    text = paper2_findings(matrix(int8_energy=0.0095, base_noisy_wer=0.30), 5, 10, "r.jsonl")
    assert "**holds**" in lines_with(text, "1. ")[0] and "0.50" in lines_with(text, "1. ")[0]
    assert "**holds**" in lines_with(text, "2. ")[0]
    assert "3 of 3 noisy cells" in lines_with(text, "3. ")[0] and "**does not hold**" in lines_with(text, "3. ")[0]
    assert "| white | 0 |" not in text  # 0 dB is outside the 5-10 dB band


def test_int8_far_below_fp16_does_not_hold_and_a_less_robust_base_holds():
    text = paper2_findings(matrix(int8_energy=0.004, base_noisy_wer=0.50), 5, 10, "r.jsonl")
    assert "**does not hold**" in lines_with(text, "2. ")[0]
    assert "0 of 3 noisy cells" in lines_with(text, "3. ")[0] and "**holds**" in lines_with(text, "3. ")[0]


def test_missing_cells_are_not_tested():
    rows = [r for r in matrix(0.0095, 0.3) if r.precision == "fp32"]
    text = paper2_findings(rows, 5, 10, "r.jsonl")
    assert "not tested" in lines_with(text, "1. ")[0] and "not tested" in lines_with(text, "2. ")[0]
