"""models/hf_compat.py: every private transformers member it relies on still exists, and each
wrapper gives what an independent computation gives, for each SSL model type."""

import pytest
import torch
import transformers
from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model, WavLMConfig, WavLMModel

from models.hf_compat import (
    PRIVATE_MEMBERS,
    attention_mask,
    attention_of,
    feature_frames,
    mask_hidden_states,
    set_attention,
)

MODELS = {
    'wav2vec2': (Wav2Vec2Config, Wav2Vec2Model),
    'hubert': (HubertConfig, HubertModel),
    'wavlm': (WavLMConfig, WavLMModel),
}
TINY = dict(
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
# attention implementations each type supports (WavLM's position bias has only the eager kernel)
ATTENTIONS = {'wav2vec2': ('eager', 'sdpa'), 'hubert': ('eager', 'sdpa'), 'wavlm': ('eager',)}


def build(name, **overrides):
    config_class, model_class = MODELS[name]
    torch.manual_seed(0)
    return model_class(config_class(**{**TINY, **overrides}))


@pytest.mark.parametrize('name', list(MODELS))
def test_every_private_member_still_exists(name):
    model = build(name)
    for owner, member in PRIVATE_MEMBERS:
        target = model.config if owner == 'config' else model
        assert hasattr(target, member), (
            f'transformers {transformers.__version__}: {type(target).__name__}.{member} is gone; '
            f'models/hf_compat.py relies on it'
        )


@pytest.mark.parametrize('name', list(MODELS))
def test_feature_frames_counts_what_the_cnn_gives(name):
    model = build(name).eval()
    lengths = [400, 401, 719, 1000, 1601, 16000, 16123]
    with torch.no_grad():
        counted = [model.feature_extractor(torch.randn(1, length)).shape[-1] for length in lengths]  # (1, C, T)
    assert [int(feature_frames(model, length)) for length in lengths] == counted
    assert feature_frames(model, torch.tensor(lengths)).tolist() == counted


@pytest.mark.parametrize('name', list(MODELS))
def test_mask_hidden_states_leaves_eval_input_alone(name):
    model = build(name, mask_time_prob=0.9, mask_feature_prob=0.5).eval()
    hidden = torch.randn(2, 50, 32)  # (B, T, D)
    assert torch.equal(mask_hidden_states(model, hidden.clone()), hidden)


@pytest.mark.parametrize('name', list(MODELS))
def test_mask_hidden_states_in_training_puts_the_mask_vector_on_frames(name):
    model = build(name, mask_time_prob=1.0, mask_time_length=2, mask_time_min_masks=2).train()
    hidden = torch.randn(2, 50, 32)  # (B, T, D)
    masked = mask_hidden_states(model, hidden.clone())
    replaced = (masked != hidden).any(dim=-1)  # (B, T)
    assert replaced.float().mean() > 0.5
    embed = model.masked_spec_embed.detach().to(masked.dtype)
    assert torch.equal(masked[replaced], embed.expand(int(replaced.sum()), -1))
    assert torch.equal(masked[~replaced], hidden[~replaced])


@pytest.mark.parametrize('name', list(MODELS))
def test_set_attention_chooses_the_kernel_a_model_built_from_the_config_runs(name, monkeypatch):
    """Independent of the attribute: whether a forward calls torch's SDPA kernel."""
    config_class, model_class = MODELS[name]
    calls = []
    kernel = torch.nn.functional.scaled_dot_product_attention

    def counted(*args, **kwargs):
        calls.append(1)
        return kernel(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, 'scaled_dot_product_attention', counted)
    for attention in ATTENTIONS[name]:
        config = config_class(**TINY)
        set_attention(config, attention)
        model = model_class(config).eval()
        calls.clear()
        with torch.no_grad():
            model(torch.randn(1, 4000))
        assert attention_of(model.config) == attention
        assert bool(calls) == (attention == 'sdpa'), f'{name}: set {attention}, SDPA called {len(calls)} times'


@pytest.mark.parametrize('name', list(MODELS))
def test_attention_mask_hides_the_padded_frames_from_attention(name):
    """A layer's attention given attention_mask(frame_mask) on a padded batch: each row's valid
    frames as its valid frames alone give them, in every kernel the type has."""
    for attention in ATTENTIONS[name]:
        config_class, model_class = MODELS[name]
        config = config_class(**TINY)
        set_attention(config, attention)
        torch.manual_seed(0)
        layer = model_class(config).encoder.layers[0].eval()
        hidden = torch.randn(2, 30, 32, generator=torch.Generator().manual_seed(1))  # (B, T, D)
        frame_mask = torch.arange(30) < torch.tensor([30, 19])[:, None]  # (B, T)
        with torch.no_grad():
            padded = layer.attention(hidden, attention_mask=attention_mask(config, hidden, frame_mask))[0]
            alone = layer.attention(hidden[1:, :19], attention_mask=attention_mask(config, hidden[1:, :19], None))[0]
        torch.testing.assert_close(padded[1, :19], alone[0], rtol=0, atol=1e-5, msg=f'{name} {attention}')
