"""The student runs Hugging Face's encoder layer by layer (models.student.run_encoder), told by an
argument which rows take the adapters. Without adapters it is Hugging Face's own forward, random
draws included; a two-path batch's halves are the one-path forwards; an inference batch takes the
adapters on every row whatever ran before."""

import numpy as np
import pytest
import torch

from models.hf_compat import set_attention
from models.student import Student, run_encoder
from tests.models.test_student import MODELS, NO_REGULARISATION, TINY, make_wave, randomise_adapters

REGULARISATION = dict(
    hidden_dropout=0.1,
    attention_dropout=0.1,
    activation_dropout=0.1,
    layerdrop=0.4,
)
# (model type, pre-LN, attention kernel): each layer-norm variant of each type, W2V2's both kernels
CASES = [
    ('wav2vec2', False, 'eager'),
    ('wav2vec2', False, 'sdpa'),
    ('wav2vec2', True, 'sdpa'),
    ('hubert', False, 'sdpa'),
    ('hubert', True, 'eager'),
    ('wavlm', False, 'eager'),
    ('wavlm', True, 'eager'),
]


def make_ssl(model_type, stable, attention, **overrides):
    config_class, model_class = MODELS[model_type]
    norm = 'layer' if stable else 'group'
    config = config_class(**{**TINY, 'num_hidden_layers': 4}, do_stable_layer_norm=stable, feat_extract_norm=norm)
    for name, value in overrides.items():
        setattr(config, name, value)
    set_attention(config, attention)
    torch.manual_seed(0)
    return model_class(config)


@pytest.mark.parametrize('model_type,stable,attention', CASES)
def test_without_adapters_it_is_hugging_faces_encoder_bitwise(model_type, stable, attention):
    """In training (dropout, LayerDrop over 4 layers) on a padded batch, and in eval: the same
    numbers, and the same number of random draws after it, as Hugging Face's encoder forward."""
    encoder = make_ssl(model_type, stable, attention, **REGULARISATION).encoder
    hidden = torch.randn(3, 40, 32, generator=torch.Generator().manual_seed(1))  # (N, T, D)
    valid = torch.arange(40) < torch.tensor([40, 31, 17])[:, None]  # (N, T)
    layers_run = []  # per forward of ours in training: how many layers LayerDrop kept
    for layer in encoder.layers:
        layer.attention.register_forward_pre_hook(lambda module, args: layers_run.append(1))
    kept = []
    for training, frame_mask, seed in [(True, valid, s) for s in range(6)] + [(True, None, 0), (False, valid, 0)]:
        encoder.train(training)
        outputs = []
        for run in (
            lambda: encoder(hidden.clone(), attention_mask=frame_mask).last_hidden_state,
            lambda: run_encoder(encoder, hidden, None, frame_mask),
        ):
            torch.manual_seed(seed)
            layers_run.clear()
            outputs.append((run(), torch.rand(4)))
        kept.append(len(layers_run))
        (theirs, after_theirs), (ours, after_ours) = outputs
        assert torch.equal(ours, theirs), (training, seed)
        assert torch.equal(after_ours, after_theirs)  # LayerDrop and dropout drew alike
    assert min(kept) < 4 and kept[-1] == 4  # LayerDrop dropped layers in training, none in eval


@pytest.mark.parametrize('model_type,stable,attention', CASES)
def test_two_path_halves_are_the_one_path_forwards(model_type, stable, attention):
    """Rows 0..B-1 of a two-path batch take no adapter, rows B..2B-1 take them: each half equals the
    batch run with the adapters off, resp. on, on every row (bitwise for the KD half, whose rows
    compute alike; the SV half's adapters run on B rows instead of 2B)."""
    teacher = make_ssl(model_type, stable, attention, **NO_REGULARISATION).eval().requires_grad_(False)
    student = Student(teacher, 3).eval()
    randomise_adapters(student)
    features = student.extract_features(make_wave())  # (B, T, C)
    batch = features.shape[0]
    twice = torch.cat([features, features])  # (2B, T, C)
    with torch.no_grad():
        both = student.encode(twice, sv_from=batch)
        off = student.encode(twice, sv_from=None)
        on = student.encode(twice, sv_from=0)
    assert torch.equal(both[:batch], off[:batch])
    torch.testing.assert_close(both[batch:], on[batch:], rtol=0, atol=1e-6)
    assert (on - off).abs().amax(dim=(1, 2)).min() > 1e-2  # every row took its adapters


@pytest.mark.parametrize('stable', [False, True])
def test_an_inference_batch_takes_the_adapters_on_every_row_whatever_ran_before(stable):
    student = Student(make_ssl('wav2vec2', stable, 'sdpa', **NO_REGULARISATION).eval(), 2).eval()
    randomise_adapters(student)
    wave = make_wave(batch=3)
    with torch.no_grad():
        alone = torch.cat([student(row[None]) for row in wave])  # (3, T, D)
        before = student(wave)
        student.forward_two_paths(wave[:1])
        np.testing.assert_array_equal(student(wave).numpy(), before.numpy())
        without = student(wave, adapters=False)
    torch.testing.assert_close(before, alone, rtol=0, atol=1e-5)
    assert (before - without).abs().amax(dim=(1, 2)).min() > 1e-2
