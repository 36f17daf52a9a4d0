"""Evaluation: normalizer, WER, RTF/RSS, the warm-up-and-time loop, the faster-whisper peer."""

from weightwise.evaluate.evaluate import EvalResult, PeerResult, UtteranceResult, evaluate
from weightwise.evaluate.normalize import normalize, normalizer_name
from weightwise.evaluate.peer import PEERS, run_faster_whisper
from weightwise.evaluate.timing import Timed, warm_up_and_time
from weightwise.evaluate.wer import WerCounts, word_errors

__all__ = [
    "PEERS",
    "EvalResult",
    "PeerResult",
    "Timed",
    "UtteranceResult",
    "WerCounts",
    "evaluate",
    "normalize",
    "normalizer_name",
    "run_faster_whisper",
    "warm_up_and_time",
    "word_errors",
]
