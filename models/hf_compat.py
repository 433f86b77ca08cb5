"""The private members of Hugging Face's speech SSL models that this project calls, each behind
one small public function, so a transformers upgrade that removes one breaks here (and in
tests/models/test_hf_compat.py, which names it) rather than deep inside the student."""

import torch

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
