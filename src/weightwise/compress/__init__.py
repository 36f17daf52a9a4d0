"""Compression as planned transforms: quantize (RTN, GPTQ), prune (magnitude, N:M, channel, CSP), low-rank, share."""

from weightwise.compress.api import compress_
from weightwise.compress.configs import Gptq, LowRank, Prune, Quant, Share
from weightwise.compress.io import load_compressed, save_compressed
from weightwise.compress.plan import Plan, Rule


def unique_storage(network):
    """{"unique_params", "unique_bytes", "params_if_dense"}: storage counted once per shared tensor."""
    from weightwise.compress.share import unique_storage as _unique_storage

    return _unique_storage(network)


__all__ = ["Gptq", "LowRank", "Plan", "Prune", "Quant", "Rule", "Share", "compress_", "load_compressed",
           "save_compressed", "unique_storage"]
