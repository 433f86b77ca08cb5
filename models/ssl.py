"""The teacher: a frozen Hugging Face speech SSL model (Wav2Vec 2.0, HuBERT or WavLM)."""

import json
import os

import torch
from huggingface_hub import hf_hub_download, is_offline_mode, try_to_load_from_cache
from huggingface_hub.errors import EntryNotFoundError
from transformers import AutoConfig, HubertModel, PreTrainedModel, Wav2Vec2Config, Wav2Vec2Model, WavLMModel

from models.hf_compat import set_attention
from models.precision import norms_in_float32

SSL_MODELS = {'wav2vec2': Wav2Vec2Model, 'hubert': HubertModel, 'wavlm': WavLMModel}
# weights a checkpoint may lack: the learned mask vector exists only where the saving config masked
OPTIONAL_WEIGHTS = {'masked_spec_embed'}
PREPROCESSOR_FILE = 'preprocessor_config.json'
# Wav2Vec2FeatureExtractor's own default, used where preprocessor_config.json leaves do_normalize out
DEFAULT_DO_NORMALIZE = True
# the variance floor of Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm
NORM_EPS = 1e-7


class TeacherLoadError(OSError):
    """model_name_or_path names nothing that can be loaded."""


def load_teacher(model_name_or_path: str, tiny_config: dict, attention: str = 'sdpa') -> PreTrainedModel:
    """'tiny' builds a randomly initialised Wav2Vec2 from tiny_config (weights drawn from the
    caller's torch seed); anything else is a hub id or a local folder saved with save_pretrained
    (any Wav2Vec2, HuBERT or WavLM checkpoint, base model or one with a task head on top).
    attention: 'sdpa' (torch's fused scaled-dot-product kernels) where the model has it, else
    'eager'; WavLM (its attention adds a position bias) always runs eager.
    The teacher comes back frozen: eval mode, no parameter requires grad; its norms run in float32
    under autocast (models/precision.py)."""
    if model_name_or_path == 'tiny':
        model = Wav2Vec2Model(Wav2Vec2Config(**tiny_config, attn_implementation=attention))
    else:
        model = load_pretrained(model_name_or_path, attention)
    model.eval()
    model.requires_grad_(False)
    return norms_in_float32(model)


def load_pretrained(model_name_or_path, attention='sdpa'):
    """The base SSL model of a checkpoint in float32, every weight read from it (a missing one is
    an error, not a silently random teacher)."""
    config = read_config(model_name_or_path)
    if config.model_type not in SSL_MODELS:
        raise ValueError(
            f'model_name_or_path={model_name_or_path!r} is a {config.model_type!r} model; '
            f'supported types: {", ".join(SSL_MODELS)}'
        )
    # WavLM's attention (with its position bias) has no other kernel
    set_attention(config, 'eager' if config.model_type == 'wavlm' else attention)
    try:
        # float32 whatever the checkpoint's dtype (transformers 5 would keep a float16 upload's):
        # the student copies these weights as its trainable float32 ones
        model, info = SSL_MODELS[config.model_type].from_pretrained(
            model_name_or_path, config=config, dtype=torch.float32, output_loading_info=True
        )
    except (OSError, ValueError, RuntimeError) as error:
        raise TeacherLoadError(load_failure(model_name_or_path, error)) from error
    missing = sorted(set(info['missing_keys']) - OPTIONAL_WEIGHTS)
    if missing:
        raise TeacherLoadError(
            f'model_name_or_path={model_name_or_path!r}: the checkpoint lacks {len(missing)} '
            f'weights of its own config (first: {missing[0]}); give a folder whose '
            f'config.json and weights were saved together'
        )
    return model


def model_from_config(config: dict, attention: str = 'sdpa') -> PreTrainedModel:
    """A randomly initialised SSL model of the type and shape of a config saved with
    config.to_dict() (a checkpoint's student), built without reading any pre-trained model; the
    caller loads its trained weights. attention as in load_teacher."""
    model_type = config.get('model_type')
    if model_type not in SSL_MODELS:
        raise ValueError(f'the saved SSL config is of a {model_type!r} model; supported types: {", ".join(SSL_MODELS)}')
    config = SSL_MODELS[model_type].config_class.from_dict(config)
    set_attention(config, 'eager' if model_type == 'wavlm' else attention)
    return SSL_MODELS[model_type](config)


def read_config(model_name_or_path):
    """The checkpoint's config.json, whatever its model type; unreadable: TeacherLoadError."""
    try:
        return AutoConfig.from_pretrained(model_name_or_path)
    except (OSError, ValueError) as error:
        raise TeacherLoadError(load_failure(model_name_or_path, error)) from error


def load_failure(model_name_or_path, error):
    """The one message for a checkpoint that cannot be read, saying where it was looked for."""
    where = (
        'HF_HUB_OFFLINE is set, so a hub id must already be in the local cache'
        if is_offline_mode()
        else 'a hub id needs network access (or, with HF_HUB_OFFLINE=1, a copy in the local cache)'
    )
    return (
        f'model_name_or_path={model_name_or_path!r}: cannot load the SSL model ({type(error).__name__}). '
        f'It is neither a local folder saved with save_pretrained (config.json + weights) nor a '
        f'loadable hub id: {where}. "tiny" gives the demo model.'
    )


def preprocessor_normalizes(model_name_or_path: str) -> bool | None:
    """Whether the checkpoint's preprocessor_config.json asks for zero-mean unit-variance input
    (do_normalize): most large checkpoints were pre-trained on normalised waves, several base ones
    on raw waves. None where there is no such file ('tiny', a folder without one, a hub id neither
    cached nor reachable); never raises."""
    path = preprocessor_file(model_name_or_path)
    if path is None:
        return None
    try:
        with open(path) as file:
            config = json.load(file)
    except (OSError, ValueError):
        return None
    return bool(config.get('do_normalize', DEFAULT_DO_NORMALIZE))


def preprocessor_file(model_name_or_path):
    """The local path of the checkpoint's preprocessor_config.json, or None: a folder's own file,
    else the hub cache's copy, else a download (skipped offline)."""
    if model_name_or_path == 'tiny':
        return None
    if os.path.isdir(model_name_or_path):
        path = os.path.join(model_name_or_path, PREPROCESSOR_FILE)
        return path if os.path.isfile(path) else None
    try:
        cached = try_to_load_from_cache(model_name_or_path, PREPROCESSOR_FILE)
        if isinstance(cached, str):
            return cached
        if cached is not None or is_offline_mode():  # known to be absent, or no way to ask
            return None
        return hf_hub_download(model_name_or_path, PREPROCESSOR_FILE)
    except (OSError, ValueError, EntryNotFoundError):
        return None


def normalize_waves(wave, lengths=None):
    """Zero mean, unit variance per utterance, as Wav2Vec2FeatureExtractor(do_normalize=True)
    prepares the input of checkpoints pre-trained that way. (B, L) -> (B, L).
    lengths (B,): the valid samples of each row of a zero-padded batch; the statistics then cover
    those alone and the padding stays 0, so a row normalises as it would alone."""
    if lengths is None:
        mean = wave.mean(dim=1, keepdim=True)  # (B, 1)
        var = wave.var(dim=1, unbiased=False, keepdim=True)
        return (wave - mean) / torch.sqrt(var + NORM_EPS)
    valid = torch.arange(wave.shape[1], device=wave.device) < lengths[:, None]  # (B, L)
    count = lengths[:, None].clamp(min=1).to(wave.dtype)  # (B, 1)
    mean = (wave * valid).sum(dim=1, keepdim=True) / count
    var = (((wave - mean) * valid) ** 2).sum(dim=1, keepdim=True) / count
    return torch.where(valid, (wave - mean) / torch.sqrt(var + NORM_EPS), 0.0)


def frozen_forward(teacher, wave, normalize=False):
    """The teacher's last hidden state, without a graph. (B, L) -> (B, T, D).
    normalize: normalise each wave first (normalize_waves), for checkpoints pre-trained on
    normalised input; the student's input must then be normalised too (SpeakerNet normalize_wave).
    Computed in inference mode; the clone is an ordinary tensor that a loss may save for backward."""
    with torch.inference_mode():
        hidden = teacher(normalize_waves(wave) if normalize else wave).last_hidden_state
    return hidden.clone()


def count_parameters(module):
    return sum(p.numel() for p in module.parameters())
