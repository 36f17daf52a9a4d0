"""Decoding: features and windows, greedy/beam search, long-form transcription."""

from weightwise.decode.options import DecodeObserver, DecodingOptions
from weightwise.decode.transcribe import Transcript, WindowTrace, transcribe

__all__ = ["DecodeObserver", "DecodingOptions", "Transcript", "WindowTrace", "transcribe"]
