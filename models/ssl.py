"""The teacher: a frozen Hugging Face speech SSL model (Wav2Vec 2.0, HuBERT or WavLM)."""
import torch
from transformers import (AutoConfig, HubertModel, PreTrainedModel, Wav2Vec2Config, Wav2Vec2Model,
                          WavLMModel)

SSL_MODELS = {'wav2vec2': Wav2Vec2Model, 'hubert': HubertModel, 'wavlm': WavLMModel}


class TeacherLoadError(OSError):
    """model_name_or_path names nothing that can be loaded."""


def load_teacher(model_name_or_path: str, tiny_config: dict, attention: str = 'sdpa') -> PreTrainedModel:
    """'tiny' builds a randomly initialised Wav2Vec2 from tiny_config (weights drawn from the
    caller's torch seed); anything else is a hub id or a local folder saved with save_pretrained.
    attention: 'sdpa' (torch's fused scaled-dot-product kernels) where the model has it, else
    'eager'; WavLM (its attention adds a position bias) always runs eager.
    The teacher comes back frozen: eval mode, no parameter requires grad."""
    if model_name_or_path == 'tiny':
        model = Wav2Vec2Model(Wav2Vec2Config(**tiny_config, attn_implementation=attention))
    else:
        model = load_pretrained(model_name_or_path, attention)
    model.eval()
    model.requires_grad_(False)
    return model


def load_pretrained(model_name_or_path, attention='sdpa'):
    config = read_config(model_name_or_path)
    if config.model_type not in SSL_MODELS:
        raise ValueError(f'model_name_or_path={model_name_or_path!r} is a {config.model_type!r} model; '
                         f'supported types: {", ".join(SSL_MODELS)}')
    # WavLM's attention (with its position bias) has no other kernel
    config._attn_implementation = 'eager' if config.model_type == 'wavlm' else attention
    try:
        return SSL_MODELS[config.model_type].from_pretrained(model_name_or_path, config=config)
    except (OSError, ValueError, RuntimeError) as error:
        raise TeacherLoadError(load_failure(model_name_or_path, error)) from error


def read_config(model_name_or_path):
    try:
        return AutoConfig.from_pretrained(model_name_or_path)
    except (OSError, ValueError) as error:
        raise TeacherLoadError(load_failure(model_name_or_path, error)) from error


def load_failure(model_name_or_path, error):
    return (f'model_name_or_path={model_name_or_path!r}: cannot load the SSL model ({type(error).__name__}). '
            f'A hub id needs network access; otherwise give a local folder saved with save_pretrained '
            f'(config.json + weights), or "tiny" for the demo model.')


def frozen_forward(teacher, wave):
    """The teacher's last hidden state, without a graph. (B, L) -> (B, T, D).
    Computed in inference mode; the clone is an ordinary tensor that a loss may save for backward."""
    with torch.inference_mode():
        hidden = teacher(wave).last_hidden_state
    return hidden.clone()


def count_parameters(module):
    return sum(p.numel() for p in module.parameters())
