"""The private members of Hugging Face's speech SSL models that this project calls, each behind
one small public function, so a transformers upgrade that removes one breaks here (and in
tests/models/test_hf_compat.py, which names it) rather than deep inside the student."""

import torch
from transformers.masking_utils import create_bidirectional_mask

# (owner, member): what the functions below rely on; the test checks each still exists
PRIVATE_MEMBERS = (
    ('config', '_attn_implementation'),
    ('model', '_get_feat_extract_output_lengths'),
    ('model', '_mask_hidden_states'),
)


def set_attention(config, name):
    """Models built from config run attention `name`; relies on PretrainedConfig._attn_implementation."""
    config._attn_implementation = name


def attention_of(config):
    """The attention models built from config run; relies on PretrainedConfig._attn_implementation."""
    return config._attn_implementation


def feature_frames(model, lengths):
    """CNN frames of waves of `lengths` samples; relies on <Model>._get_feat_extract_output_lengths."""
    return model._get_feat_extract_output_lengths(lengths)


def mask_hidden_states(model, hidden: torch.Tensor) -> torch.Tensor:
    """(B, T, D) features time/feature-masked as config sets (train only); relies on <Model>._mask_hidden_states."""
    return model._mask_hidden_states(hidden)


def attention_mask(config, hidden: torch.Tensor, frame_mask: torch.Tensor | None):
    """What an encoder layer's attention takes for frame_mask (N, T) bool, the valid frames (None:
    all): WavLM's attention the bool mask itself, W2V2's and HuBERT's the form their kernel
    (eager, SDPA) needs, as their encoder makes it; relies on masking_utils.create_bidirectional_mask."""
    if config.model_type == 'wavlm':
        return frame_mask
    return create_bidirectional_mask(config=config, inputs_embeds=hidden, attention_mask=frame_mask)
