"""Models: registry of bundled weights, loaders for user checkpoints, precision."""

from weightwise.models.loaders import load_model, register_loader
from weightwise.models.precision import PRECISIONS
from weightwise.models.registry import available_models
from weightwise.models.whisper import ModelInfo, WhisperASR, WhisperTokens, register_stream

__all__ = [
    "PRECISIONS",
    "ModelInfo",
    "WhisperASR",
    "WhisperTokens",
    "available_models",
    "load_model",
    "register_loader",
    "register_stream",
]
