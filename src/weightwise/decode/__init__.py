"""Decoding: features and windows, greedy/beam search, long-form transcription."""

from weightwise.decode.options import DecodeCounter, DecodeObserver, DecodingOptions
from weightwise.decode.transcribe import Transcript, WindowTrace, transcribe

__all__ = ["DecodeCounter", "DecodeObserver", "DecodingOptions", "Transcript", "WindowTrace", "transcribe"]
