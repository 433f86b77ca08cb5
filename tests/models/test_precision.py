"""The layer and group norms run in float32 under autocast (models/precision.py), in every model
the code builds, and are the plain modules in float32."""

import copy

import pytest
import torch
import torch.nn as nn

from arguments import EXPERIMENT_ARGS, SYSTEM_ARGS
from models.build import build_model
from models.precision import PLAIN, Float32GroupNorm, Float32LayerNorm
from models.ssl import load_teacher
from tests.models.test_ssl import TINY  # a 2-layer Wav2Vec2 of 32 channels

ARGS = dict({**SYSTEM_ARGS, **EXPERIMENT_ARGS}, num_hidden_layers=1, ecapa_channels=16, embedding_size=16)


def build():
    torch.manual_seed(0)
    teacher = load_teacher('tiny', TINY)
    model = build_model(ARGS, teacher, num_classes=3)
    with torch.no_grad():  # scales and shifts away from 1 and 0, so that a norm that skips them shows
        for module in [*teacher.modules(), *model.modules()]:
            if isinstance(module, (nn.LayerNorm, nn.GroupNorm)) and module.weight is not None:
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.3)
    return teacher, model


def norms(module):
    return [m for m in module.modules() if isinstance(m, (nn.LayerNorm, nn.GroupNorm))]


def by_hand(module, x):
    """The norm in float64 from its definition: (x - mean) / sqrt(var + eps) x scale + shift."""
    x = x.double()
    if isinstance(module, nn.GroupNorm):  # (B, C, T): groups of C / G channels over all of T
        b, c, t = x.shape
        grouped = x.reshape(b, module.num_groups, -1)
        mean, var = grouped.mean(-1, keepdim=True), grouped.var(-1, unbiased=False, keepdim=True)
        y = ((grouped - mean) / torch.sqrt(var + module.eps)).reshape(b, c, t)
        return y * module.weight.double()[:, None] + module.bias.double()[:, None]
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + module.eps) * module.weight.double() + module.bias.double()


def test_every_norm_of_the_teacher_and_of_the_trained_model_runs_in_float32_under_bf16_autocast():
    """A norm left as nn.LayerNorm (a model built by another path) returns bf16 under a CPU's
    autocast; one that casts back to bf16, or computes in bf16, misses the float64 reference by
    bf16's rounding (about 4e-3)."""
    teacher, model = build()
    found = norms(teacher) + norms(model)
    kinds = {type(m) for m in found}
    assert kinds == {Float32LayerNorm, Float32GroupNorm}, kinds  # the group-norm CNN's first layer too
    generator = torch.Generator().manual_seed(3)
    for module in found:
        width = module.normalized_shape[0] if isinstance(module, nn.LayerNorm) else module.num_channels
        shape = (2, 5, width) if isinstance(module, nn.LayerNorm) else (2, width, 7)
        x = (torch.randn(shape, generator=generator) * 3 + 1).bfloat16()
        with torch.autocast('cpu', dtype=torch.bfloat16):
            y = module(x)
        assert y.dtype == torch.float32
        torch.testing.assert_close(y.double(), by_hand(module, x), rtol=0, atol=2e-5)


def test_in_float32_the_model_is_bit_for_bit_the_one_with_plain_norms():
    teacher, model = build()
    plain = copy.deepcopy(model)
    for module in plain.modules():
        if type(module) in (Float32LayerNorm, Float32GroupNorm):
            module.__class__ = PLAIN[type(module)]
    assert not any(type(m) in (Float32LayerNorm, Float32GroupNorm) for m in plain.modules())
    assert model.state_dict().keys() == plain.state_dict().keys()
    wave = torch.randn(2, 8000, generator=torch.Generator().manual_seed(4))
    model.eval(), plain.eval()
    with torch.no_grad():
        assert torch.equal(model.embed(wave), plain.embed(wave))


def test_a_model_rebuilt_from_a_checkpoints_config_has_the_float32_norms_too():
    teacher, _ = build()
    rebuilt = build_model(ARGS, None, num_classes=3, ssl_config=teacher.config.to_dict())
    assert norms(rebuilt) and all(type(m) in (Float32LayerNorm, Float32GroupNorm) for m in norms(rebuilt))


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_without_autocast_a_norm_keeps_its_inputs_precision(dtype):
    module = Float32LayerNorm(8).to(dtype)
    x = torch.randn(3, 8, dtype=dtype)
    assert module(x).dtype == dtype
