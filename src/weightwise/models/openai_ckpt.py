"""openai-whisper `.pt` checkpoints (``{"dims": ..., "model_state_dict": ...}``) <-> transformers names.

The renames are pure string substitutions (../shared/docs/WHISPER_CT2.md, section 3). openai
checkpoints carry no tokenizer, so the tokenizer and suppression lists come from the bundled
package with the same vocabulary (51864 = English-only, 51865 = multilingual).
"""

from __future__ import annotations

from pathlib import Path

import torch

from weightwise.errors import InputError
from weightwise.models.registry import bundled_side_files, file_sha256
from weightwise.models.whisper import build_whisper, read_suppress_lists

# (openai fragment, transformers fragment): applied in this order going to transformers and in
# reverse order coming back; the order keeps e.g. `cross_attn_ln` from matching `attn_ln`.
_RENAMES = (
    ("encoder.ln_post.", "encoder.layer_norm."),
    ("decoder.ln.", "decoder.layer_norm."),
    ("positional_embedding", "embed_positions.weight"),
    ("token_embedding", "embed_tokens"),
    (".blocks.", ".layers."),
    (".cross_attn_ln.", ".encoder_attn_layer_norm."),
    (".attn_ln.", ".self_attn_layer_norm."),
    (".mlp_ln.", ".final_layer_norm."),
    (".cross_attn.", ".encoder_attn."),
    (".attn.", ".self_attn."),
    (".query.", ".q_proj."),
    (".key.", ".k_proj."),
    (".value.", ".v_proj."),
    (".out.", ".out_proj."),
    (".mlp.0.", ".fc1."),
    (".mlp.2.", ".fc2."),
)


def openai_to_hf_name(name: str) -> str:
    for openai, hf in _RENAMES:
        name = name.replace(openai, hf)
    return "model." + name


def hf_to_openai_name(name: str) -> str:
    """Inverse of `openai_to_hf_name` (for exporting a checkpoint openai-whisper can load)."""
    name = name.removeprefix("model.")
    for openai, hf in reversed(_RENAMES):
        name = name.replace(hf, openai)
    return name


def _config_from_dims(dims: dict):
    from transformers import WhisperConfig  # lazy: transformers takes seconds to import

    eot = 50256 if dims["n_vocab"] == 51864 else 50257
    return WhisperConfig(
        vocab_size=dims["n_vocab"],
        num_mel_bins=dims["n_mels"],
        d_model=dims["n_audio_state"],
        encoder_layers=dims["n_audio_layer"],
        decoder_layers=dims["n_text_layer"],
        encoder_attention_heads=dims["n_audio_head"],
        decoder_attention_heads=dims["n_text_head"],
        encoder_ffn_dim=4 * dims["n_audio_state"],
        decoder_ffn_dim=4 * dims["n_text_state"],
        max_source_positions=dims["n_audio_ctx"],
        max_target_positions=dims["n_text_ctx"],
        activation_function="gelu",
        scale_embedding=False,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=eot + 1,
        tie_word_embeddings=True,
    )


def load_openai_checkpoint(path: Path, precision: str, cache_dir: Path | None = None):
    """Load an openai-whisper checkpoint file into the transformers network."""
    from transformers import WhisperForConditionalGeneration  # lazy: transformers takes seconds to import

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        dims, state = checkpoint["dims"], checkpoint["model_state_dict"]
    except Exception as err:
        raise InputError(f"{path}: not an openai-whisper checkpoint ({type(err).__name__})") from None
    tok_dir = bundled_side_files(dims.get("n_vocab"), cache_dir)
    if tok_dir is None:
        raise InputError(f"{path}: vocabulary of {dims.get('n_vocab')} tokens has no bundled tokenizer")
    with torch.device("meta"):
        network = WhisperForConditionalGeneration(_config_from_dims(dims))
    hf_state = {openai_to_hf_name(k): v.float() for k, v in state.items()}
    missing, unexpected = network.load_state_dict(hf_state, strict=False, assign=True)
    if set(missing) - {"proj_out.weight"} or unexpected:
        raise InputError(
            f"{path}: checkpoint keys do not match Whisper "
            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    network.tie_weights()
    return build_whisper(
        network,
        tok_dir / "tokenizer.json",
        read_suppress_lists(tok_dir),
        path.stem,
        str(path),
        file_sha256(path),
        precision,
    )


def save_openai_checkpoint(network, path: Path) -> None:
    """Write a transformers Whisper network as an openai-whisper `.pt` checkpoint."""
    c = network.config
    dims = dict(
        n_mels=c.num_mel_bins,
        n_audio_ctx=c.max_source_positions,
        n_audio_state=c.d_model,
        n_audio_head=c.encoder_attention_heads,
        n_audio_layer=c.encoder_layers,
        n_vocab=c.vocab_size,
        n_text_ctx=c.max_target_positions,
        n_text_state=c.d_model,
        n_text_head=c.decoder_attention_heads,
        n_text_layer=c.decoder_layers,
    )
    state = {
        hf_to_openai_name(k): v.detach().clone() for k, v in network.state_dict().items() if k != "proj_out.weight"
    }
    torch.save({"dims": dims, "model_state_dict": state}, path)
