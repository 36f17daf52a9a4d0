"""Streaming transducers trained by our own recipe: chunked Conformer or recurrent encoder,
LSTM or stateless predictor, joiner; greedy and beam search; a streaming state object."""

from weightwise.models.transducer.config import TransducerConfig
from weightwise.models.transducer.loss import rnnt_loss
from weightwise.models.transducer.model import (
    TransducerASR,
    TransducerOutput,
    count_params,
    is_transducer_dir,
    load_transducer_dir,
    save_transducer,
)
from weightwise.models.transducer.network import TransducerNetwork
from weightwise.models.transducer.stream import TimedWord, TransducerResult, TransducerStream

__all__ = [
    "TimedWord",
    "TransducerASR",
    "TransducerConfig",
    "TransducerNetwork",
    "TransducerOutput",
    "TransducerResult",
    "TransducerStream",
    "count_params",
    "is_transducer_dir",
    "load_transducer_dir",
    "rnnt_loss",
    "save_transducer",
]
