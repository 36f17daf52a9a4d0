"""Compression as planned transforms: quantize (RTN, GPTQ), prune (magnitude, N:M, channel, CSP), low-rank,
share, screen (the output projection).

Importing this package registers every technique's handler and compressed-module kinds, and
teaches `weightwise.models.load_model` the folders `save_compressed` writes (`register_loader`).
"""

from weightwise.compress import gptq, lowrank, prune, quantize, screen, share  # noqa: F401  (importing registers them)
from weightwise.compress.api import compress_
from weightwise.compress.configs import Gptq, LowRank, Prune, Quant, Screen, Share
from weightwise.compress.io import check_compressed_out, is_compressed_dir, load_compressed, save_compressed
from weightwise.compress.plan import Plan, Rule
from weightwise.compress.share import unique_storage
from weightwise.models import register_loader

register_loader(is_compressed_dir, load_compressed)

__all__ = [
    "Gptq",
    "LowRank",
    "Plan",
    "Prune",
    "Quant",
    "Rule",
    "Screen",
    "Share",
    "check_compressed_out",
    "compress_",
    "load_compressed",
    "save_compressed",
    "unique_storage",
]
