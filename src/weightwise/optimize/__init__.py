"""Energy-targeted compression under a WER budget: `optimize(model, device, wer_budget, calib, eval_set, out)`.

profile (reference decode of the calibration audio) -> sensitivity (per group and candidate:
KL of the float model's own output, and the profiler's counts) -> plan (`compress.planner`) ->
compress -> evaluate (WER and modeled energy on transcribed audio the optimizer never saw).
"""

from weightwise.optimize.pipeline import OptimizeOptions, OptimizeResult, optimize

__all__ = ["OptimizeOptions", "OptimizeResult", "optimize"]
