"""Training recipes for the models we train ourselves (the streaming transducer family)."""

from weightwise.train.digits import DigitStrings, clips_by_split, make_digit_string, write_digit_strings
from weightwise.train.transducer import TrainConfig, TrainSummary, train_transducer

__all__ = [
    "DigitStrings",
    "TrainConfig",
    "TrainSummary",
    "clips_by_split",
    "make_digit_string",
    "train_transducer",
    "write_digit_strings",
]
