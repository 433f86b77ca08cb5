"""The student: the teacher's first N transformer layers, each with a parallel adapter.

Each layer's `feed_forward` is wrapped (AdaptedFeedForward) with its adapter, and the student runs
Hugging Face's encoder layer by layer itself (run_encoder), so that every call says which rows of
the batch take the adapters: none (the KD path), all (the SV path, inference), or those from row B
on (one forward over a batch holding a KD half and an SV half gives both paths). The layers are
Hugging Face's own modules, for every model type and layer-norm variant it implements (W2V2,
HuBERT, WavLM with its position bias).
"""

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.hf_compat import attention_mask, feature_frames, mask_hidden_states
from models.ssl import model_from_config


class Adapter(nn.Module):
    """s * up(relu(down(LN(h)))), with `up` zero-initialised so it starts by adding nothing.
    input_residual adds h once more, as the original code did."""

    def __init__(self, dim, bottleneck=64, scale=0.1, input_residual=False):
        super().__init__()
        self.layer_norm = nn.LayerNorm(dim)
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.down.bias)  # down.weight: nn.Linear's kaiming-uniform, the original adapter's own
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.scale = scale
        self.input_residual = input_residual

    def forward(self, h):
        out = self.scale * self.up(torch.relu(self.down(self.layer_norm(h))))
        return out + h if self.input_residual else out


class AdaptedFeedForward(nn.Module):
    """A layer's feed-forward block plus its adapter on the rows from `sv_from` on.

    Its input is the residual stream h entering the block. In pre-LN layers the block is
    h + FFN(LN(h)), so the layer's `final_layer_norm` is moved in here (`pre_norm`) and
    replaced by an identity in the layer: the wrapper then sees h itself."""

    def __init__(self, feed_forward, adapter, pre_norm=None):
        super().__init__()
        self.pre_norm = pre_norm if pre_norm is not None else nn.Identity()
        self.feed_forward = feed_forward
        self.adapter = adapter

    def forward(self, h, sv_from):
        """(N, T, D) -> (N, T, D); sv_from: the first row that takes the adapter (None: no row)."""
        out = self.feed_forward(self.pre_norm(h))
        if sv_from is None:
            return out
        if sv_from == 0:
            return out + self.adapter(h)
        return torch.cat([out[:sv_from], out[sv_from:] + self.adapter(h[sv_from:])])


def feed_forward_block(block, h, sv_from):
    """A layer's feed-forward block, adapted (adapters on the rows from sv_from on) or Hugging
    Face's own (a student without adapters: sv_from changes nothing)."""
    return block(h, sv_from) if isinstance(block, AdaptedFeedForward) else block(h)


def run_encoder(encoder, hidden, sv_from, frame_mask=None):
    """Hugging Face's encoder forward written out (positional conv, LayerNorm, dropout, LayerDrop,
    the layers), with the adapters on the rows from sv_from on (None: none). The random draws come
    in Hugging Face's order, so a seeded run gives its numbers. frame_mask (N, T) bool: the valid
    frames of a padded batch. (N, T, D) -> (N, T, D)."""
    config = encoder.config
    if frame_mask is not None:
        hidden = torch.where(frame_mask[..., None], hidden, 0.0)  # padded frames enter as zeros
    mask = attention_mask(config, hidden, frame_mask)
    hidden = hidden + encoder.pos_conv_embed(hidden)
    if not config.do_stable_layer_norm:
        hidden = encoder.layer_norm(hidden)
    hidden = encoder.dropout(hidden)
    position_bias = None  # WavLM's, made by its first layer and handed on
    for index, layer in enumerate(encoder.layers):
        if layer_dropped(encoder, index):
            continue
        hidden, position_bias = run_layer(layer, hidden, mask, position_bias, sv_from, config)
    return encoder.layer_norm(hidden) if config.do_stable_layer_norm else hidden


def layer_dropped(encoder, index):
    """LayerDrop's draw for layer `index` (training only): one torch.rand per layer, where Hugging
    Face draws it; WavLM keeps (and draws nothing for) its first layer, which makes the position bias."""
    config = encoder.config
    if not encoder.training or config.layerdrop <= 0.0 or (index == 0 and config.model_type == 'wavlm'):
        return False
    return bool(torch.rand([]) < config.layerdrop)


def run_layer(layer, hidden, mask, position_bias, sv_from, config):
    """One encoder layer as Hugging Face's forward runs it, its feed-forward block with the adapters
    on the rows from sv_from on: post-LN LN(h + FFN(h)) after LN(x + attention(x)), or pre-LN
    h + FFN(LN(h)) after x + attention(LN(x)). (N, T, D) -> (N, T, D), and WavLM's position bias."""
    wavlm = config.model_type == 'wavlm'
    if config.do_stable_layer_norm:
        attended, position_bias = attend(layer.attention, layer.layer_norm(hidden), mask, position_bias, wavlm)
        hidden = hidden + layer.dropout(attended)
        hidden = hidden + feed_forward_block(layer.feed_forward, layer.final_layer_norm(hidden), sv_from)
        if getattr(layer, 'adapter_layer', None) is not None:  # a checkpoint's own attention adapters (MMS)
            hidden = hidden + layer.adapter_layer(hidden)
        return hidden, position_bias
    attended, position_bias = attend(layer.attention, hidden, mask, position_bias, wavlm)
    hidden = layer.layer_norm(hidden + layer.dropout(attended))
    return layer.final_layer_norm(hidden + feed_forward_block(layer.feed_forward, hidden, sv_from)), position_bias


def attend(attention, hidden, mask, position_bias, wavlm):
    """A layer's self-attention: (N, T, D) -> (N, T, D), and the position bias that WavLM's
    attention takes and gives back (None for W2V2 and HuBERT)."""
    if wavlm:
        attended, _, position_bias = attention(hidden, attention_mask=mask, position_bias=position_bias)
        return attended, position_bias
    return attention(hidden, attention_mask=mask)[0], None


def copy_truncated(teacher, num_layers):
    """A model of the teacher's class and config with num_layers layers, holding the teacher's
    weights for everything it has (front end, masked_spec_embed, positional conv, final LayerNorm,
    layers 0..num_layers-1)."""
    if not 1 <= num_layers <= teacher.config.num_hidden_layers:
        raise ValueError(
            f'num_hidden_layers={num_layers}: the student needs 1 to '
            f'{teacher.config.num_hidden_layers} layers (the teacher has that many)'
        )
    if getattr(teacher.config, 'add_adapter', False):
        raise ValueError(
            'model_name_or_path: SSL models with add_adapter=True (a CTC/seq2seq output adapter) '
            'are not supported; give the base pre-trained model'
        )
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = num_layers
    model = type(teacher)(config)
    own = model.state_dict()
    model.load_state_dict({name: tensor for name, tensor in teacher.state_dict().items() if name in own})
    return model


class Student(nn.Module):
    """The student SSL model with one parallel adapter per layer (with_adapters=False: the plain
    truncated model, for the baselines that fine-tune without them).

    Built from the teacher (its first num_layers layers copied: training), or from ssl_config
    alone, the student's own SSL config as a checkpoint keeps it (config.to_dict()): random
    weights, which the checkpoint's then replace, and no teacher read (teacher and num_layers None)."""

    def __init__(
        self,
        teacher,
        num_layers: int | None,
        bottleneck: int = 64,
        scale: float = 0.1,
        input_residual: bool = False,
        with_adapters: bool = True,
        ssl_config: dict | None = None,
    ):
        super().__init__()
        self.ssl = copy_truncated(teacher, num_layers) if ssl_config is None else model_from_config(ssl_config)
        pre_ln = self.ssl.config.do_stable_layer_norm
        for layer in self.ssl.encoder.layers if with_adapters else []:
            adapter = Adapter(self.hidden_size, bottleneck, scale, input_residual)
            pre_norm = layer.final_layer_norm if pre_ln else None
            if pre_ln:
                layer.final_layer_norm = nn.Identity()
            layer.feed_forward = AdaptedFeedForward(layer.feed_forward, adapter, pre_norm)
        if teacher is not None:
            self.to(next(teacher.parameters()).device)

    @property
    def hidden_size(self) -> int:
        return self.ssl.config.hidden_size

    def forward(self, wave, adapters=True):
        """One path: (B, L) -> (B, T, D), with (SV) or without (KD) adapters."""
        features = self.extract_features(wave)
        return self.encode(features, sv_from=0 if adapters else None)

    def forward_rows(self, wave, sv_from):
        """(B, L) -> (B, T, D), the rows before sv_from without adapters (the KD path), the rest
        with them: how the original code's evaluation ran its segments (eval_segments_like_original)."""
        return self.encode(self.extract_features(wave), sv_from=sv_from)

    def forward_padded(self, wave, lengths):
        """The SV path over a zero-padded batch: (B, L) waves with (B,) valid samples ->
        (hidden (B, T, D), valid frames (B,)), each row's valid frames as the utterance alone gives
        them (up to rounding): the front end sees no padding (extract_features_padded), the encoder
        zeroes the padded frames and masks them out of attention."""
        features = self.extract_features_padded(wave, lengths)  # (B, T, C)
        frames = feature_frames(self.ssl, lengths).long()
        valid = torch.arange(features.shape[1], device=wave.device) < frames[:, None]  # (B, T)
        return self.encode(features, sv_from=0, frame_mask=valid), frames

    def extract_features_padded(self, wave, lengths):
        """The CNN over a zero-padded batch (B, L) with (B,) valid samples -> (B, T, C), every valid
        frame as the utterance alone gives it. The CNN's convolutions have no padding, so a valid
        frame sees valid samples only; but the group norm of base models (feat_extract_norm='group')
        normalises the first layer's channels over time, padding included: there the first layer
        runs on each utterance's valid samples alone, and the rest of the CNN on the padded batch."""
        if self.ssl.config.feat_extract_norm != 'group':
            return self.extract_features(wave)
        first, *rest = self.ssl.feature_extractor.conv_layers
        outputs = [first(row[None, None, :length]) for row, length in zip(wave, lengths.tolist())]  # (1, C, t_i)
        longest = max(out.shape[-1] for out in outputs)
        hidden = torch.cat([F.pad(out, (0, longest - out.shape[-1])) for out in outputs])  # (B, C, T1)
        for layer in rest:
            hidden = layer(hidden)
        return hidden.transpose(1, 2)

    def forward_two_paths(self, wave):
        """Both paths over one CNN front end: (B, L) -> (KD (B, T, D) without adapters,
        SV (B, T, D) with adapters). Everything after the CNN (projection, masking, dropout,
        the layers) runs on the duplicated batch, so each half draws its own masks."""
        features = self.extract_features(wave)  # (B, T, C)
        batch = features.shape[0]
        hidden = self.encode(torch.cat([features, features]), sv_from=batch)  # (2B, T, D)
        return hidden[:batch], hidden[batch:]

    def forward_two_paths_duplicated(self, wave):
        """The original code's formulation of forward_two_paths, the whole student (CNN included)
        on cat([wave, wave]): the reference that tests and benchmarks/train_step.py compare with."""
        batch = wave.shape[0]
        hidden = self.encode(self.extract_features(torch.cat([wave, wave])), sv_from=batch)
        return hidden[:batch], hidden[batch:]

    def extract_features(self, wave):
        """The CNN feature encoder: (B, L) -> (B, T, C)."""
        return self.ssl.feature_extractor(wave).transpose(1, 2)

    def encode(self, features, sv_from, frame_mask=None):
        """Projection, Hugging Face's time/feature masking and the encoder, adapters on the rows
        from sv_from on (None: none); frame_mask (N, T) bool marks the valid frames of a padded
        batch. (N, T, C) -> (N, T, D)."""
        hidden = self.ssl.feature_projection(features)
        if isinstance(hidden, tuple):  # W2V2 and WavLM also return the normalised features
            hidden = hidden[0]
        hidden = mask_hidden_states(self.ssl, hidden)
        return run_encoder(self.ssl.encoder, hidden, sv_from, frame_mask)

    def adapter_parameters(self):
        return [p for module in self.adapters() for p in module.parameters()]

    def backbone_parameters(self):
        adapter_ids = {id(p) for p in self.adapter_parameters()}
        return [p for p in self.parameters() if id(p) not in adapter_ids]

    def adapters(self):
        return [module for module in self.modules() if isinstance(module, Adapter)]
