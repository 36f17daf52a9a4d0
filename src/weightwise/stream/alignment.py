"""Word times from Whisper's cross-attention: the alignment heads + dynamic time warping.

openai-whisper's `word_timestamps` method (timing.py), computed without an extra decoder pass:
forward hooks on the alignment layers' cross-attention keep the queries of every decoder call
(`q_proj` outputs, one row per position) and the keys of the window (`k_proj`, computed once when
the key/value cache is on). After the search, for each alignment head: softmax(q k^T / sqrt(d))
over the window's content frames, normalized per frame over the tokens, median-filtered along time
(width 7), averaged over the heads; DTW on its negation gives each token's first frame (20 ms each).
A word starts at its first token's frame and ends where the next word (or end-of-text) starts.

The alignment heads come from the model's CTranslate2 `config.json` (`alignment_heads`, as openai
ships them per model); without them, every head of the decoder's upper half (openai's default).
The DTW and median filter are transformers' (`generation_whisper`, the same algorithm as openai's).
Since the hooks only read tensors the decode computes anyway, word times add no weight traffic.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from weightwise.models.whisper import WhisperASR
from weightwise.stream.protocol import Word

FRAMES_PER_S = 50  # encoder positions per second: 100 mel frames/s, halved by the stride-2 conv
MEDIAN_FILTER_WIDTH = 7  # openai-whisper timing.py default
# openai-whisper's merge rules: these attach to the following / preceding word
PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"


def alignment_heads(model: WhisperASR) -> list[tuple[int, int]]:
    """(decoder layer, head) pairs whose cross-attention follows the speech."""
    heads = getattr(model.network.generation_config, "alignment_heads", None)
    config = Path(model.info.source) / "config.json"
    if not heads and config.is_file():
        try:
            heads = json.loads(config.read_text()).get("alignment_heads")
        except (json.JSONDecodeError, OSError, AttributeError):
            heads = None
    if heads:
        return [(int(layer), int(head)) for layer, head in heads]
    cfg = model.network.config
    return [
        (layer, head)
        for layer in range(cfg.decoder_layers // 2, cfg.decoder_layers)
        for head in range(cfg.decoder_attention_heads)
    ]


class AttentionRecorder:
    """Context manager: keeps the alignment layers' cross-attention queries and keys of one window."""

    def __init__(self, model: WhisperASR):
        self.heads = alignment_heads(model)
        cfg = model.network.config
        self.n_heads, self.head_dim = cfg.decoder_attention_heads, cfg.d_model // cfg.decoder_attention_heads
        self.layers = model.network.model.decoder.layers
        self.queries: dict[int, list[torch.Tensor]] = {}
        self.keys: dict[int, torch.Tensor] = {}
        self._handles: list = []

    def _keep_query(self, layer: int):
        def hook(module, args, output):
            self.queries[layer].append(output[0].detach())  # batch 1: (positions, d_model)

        return hook

    def _keep_key(self, layer: int):
        def hook(module, args, output):
            self.keys[layer] = output[0].detach()  # (frames, d_model)

        return hook

    def __enter__(self) -> AttentionRecorder:
        for layer in sorted({layer for layer, _ in self.heads}):
            self.queries[layer] = []
            attn = self.layers[layer].encoder_attn
            self._handles.append(attn.q_proj.register_forward_hook(self._keep_query(layer)))
            self._handles.append(attn.k_proj.register_forward_hook(self._keep_key(layer)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def token_frames(self, n_prefix: int, n_text: int, n_content_frames: int) -> np.ndarray | None:
        """First encoder frame of each of the `n_text` text tokens and of end-of-text (n_text + 1
        values), or None when too little was recorded (e.g. no text)."""
        from transformers.models.whisper.generation_whisper import _dynamic_time_warping, _median_filter

        n_frames = max(1, min(n_content_frames, next(iter(self.keys.values())).shape[0] if self.keys else 0))
        maps = []
        for layer, head in self.heads:
            if layer not in self.keys or not self.queries.get(layer):
                return None
            q = torch.cat(self.queries[layer])[n_prefix - 1 :]  # the rows that predict each text token + eot
            cols = slice(head * self.head_dim, (head + 1) * self.head_dim)
            scores = q[:, cols].float() @ self.keys[layer][:n_frames, cols].float().T * self.head_dim**-0.5
            maps.append(scores.softmax(-1))
        weights = torch.stack(maps)[:, : n_text + 1]  # (heads, tokens + eot, frames)
        if weights.shape[1] < 2:
            return None
        std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
        weights = _median_filter((weights - mean) / std.clamp_min(1e-9), MEDIAN_FILTER_WIDTH)
        text_idx, time_idx = _dynamic_time_warping(-weights.mean(0).double().numpy())
        jumps = np.pad(np.diff(text_idx), (1, 0), constant_values=1).astype(bool)
        frames = time_idx[jumps][: n_text + 1]
        if len(frames) == n_text:  # stopped before end-of-text (token limit, repetition): ends at the content's end
            frames = np.append(frames, n_frames)
        return frames


def split_words(model: WhisperASR, tokens: list[int]) -> list[tuple[str, list[int]]]:
    """Tokens grouped into words (openai's rule for space-separated languages): a word starts at a
    token that begins with a space; punctuation tokens join the neighbouring word."""
    words: list[tuple[str, list[int]]] = []
    pending: list[int] = []  # tokens of an incomplete UTF-8 character
    for index in range(len(tokens)):
        pending.append(index)
        piece = model.tokenizer.decode([tokens[i] for i in pending], skip_special_tokens=True)
        if "\ufffd" in piece and index + 1 < len(tokens):
            continue
        indices, pending = pending, []
        bare = piece.strip()
        if not words:
            starts_word = True
        elif bare and all(c in APPEND_PUNCTUATION for c in bare):
            starts_word = False  # closing punctuation joins the word before it
        elif (last := words[-1][0].strip()) and all(c in PREPEND_PUNCTUATION for c in last):
            starts_word = False  # an opening quote or bracket waits for its word
        else:
            starts_word = piece.startswith(" ")
        if starts_word:
            words.append((piece, indices))
        else:
            text, idx = words[-1]
            words[-1] = (text + piece, idx + indices)
    return [(text.strip(), idx) for text, idx in words if text.strip()]


def timed_words(
    model: WhisperASR, tokens: list[int], frames: np.ndarray | None, offset_s: float, duration_s: float
) -> list[Word]:
    """Words of `tokens` with times in the stream (`offset_s` = the window's start in the stream).

    Without frames (nothing recorded) the words share the window evenly: a stated fallback, not DTW.
    """
    words = split_words(model, tokens)
    out = []
    for n, (text, idx) in enumerate(words):
        if frames is not None and len(frames) == len(tokens) + 1:
            start = float(frames[idx[0]]) / FRAMES_PER_S
            end = float(frames[idx[-1] + 1]) / FRAMES_PER_S
        else:
            start, end = duration_s * n / len(words), duration_s * (n + 1) / len(words)
        start, end = min(start, duration_s), min(max(end, start), duration_s)
        out.append(Word(text, round(offset_s + start, 3), round(offset_s + end, 3)))
    return out
