"""How the parts are wired together in the trained system: which loss reaches which parameters,
that inference runs through the adapters, and that the optimizer holds every parameter once."""

import collections
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from arguments import EXPERIMENT_ARGS, SYSTEM_ARGS
from models.build import build_model
from models.ssl import count_parameters, frozen_forward, load_teacher
from trainer.methods import step_losses
from trainer.parts import build_optimizer

# LayerDrop off: a dropped layer gets no gradient at all, which would hide what the tests look for
TINY = dict(
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
    layerdrop=0.0,
)
PRE_LN = dict(do_stable_layer_norm=True, feat_extract_norm='layer', conv_bias=True)
ARGS = dict(
    {**SYSTEM_ARGS, **EXPERIMENT_ARGS}, num_hidden_layers=2, ecapa_channels=16, embedding_size=16, spec_mask_freq=4
)
KD_WEIGHT = 75.0
# the learned mask vector takes part only where time masking happens to fall
MASK_ONLY = {'student.ssl.masked_spec_embed'}


def build(stable=False, trained_adapters=False, trained_norms=False):
    """(frozen teacher, SpeakerNet for 5 speakers) in training mode; trained_adapters: every
    adapter weight random, as after training (a fresh adapter's `up` is zero); trained_norms: every
    LayerNorm's scale and shift random in the teacher (a fresh one's 1 and 0 leave its input's
    normalised values as they are, hiding which of the two a module reads)."""
    torch.manual_seed(0)
    teacher = load_teacher('tiny', dict(TINY, **PRE_LN) if stable else TINY)
    if trained_norms:
        with torch.no_grad():
            for module in teacher.modules():
                if isinstance(module, torch.nn.LayerNorm):
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.normal_(0.0, 0.3)
    model = build_model(ARGS, teacher, num_classes=5).train()
    if trained_adapters:
        with torch.no_grad():
            for p in model.student.adapter_parameters():
                p.copy_(torch.randn_like(p) * 0.3)
    return teacher, model


def make_batch():
    generator = torch.Generator().manual_seed(1)
    clean = torch.randn(3, 8000, generator=generator)
    augmented = clean + 0.3 * torch.randn(clean.shape, generator=generator)
    return clean, augmented, torch.tensor([0, 3, 4])


def seed(value):
    """Every draw of a training forward: torch's (dropout, ECAPA's masking) and numpy's (Hugging
    Face's time masking)."""
    torch.manual_seed(value)
    np.random.seed(value)


def step_loss_terms(model, teacher, batch):
    """The KD and SV losses of one training step, as separate graphs from one forward; checked to be
    the two terms trainer.methods.step_losses adds (same seeds, so the same dropout and masks)."""
    clean, augmented, labels = batch
    seed(2)
    target = frozen_forward(teacher, clean)  # (B, T, D)
    kd_hidden, sv_loss, _ = model(augmented, labels)
    kd_loss = F.mse_loss(kd_hidden, target) * KD_WEIGHT
    seed(2)
    _, values = step_losses(model, teacher, clean, augmented, labels, KD_WEIGHT)
    assert values[0].item() == kd_loss.item() and values[1].item() == sv_loss.item()
    return kd_loss, sv_loss


def gradients(loss, named):
    """{name: gradient of loss, None where the parameter is not in its graph}."""
    grads = torch.autograd.grad(loss, list(named.values()), retain_graph=True, allow_unused=True)
    return dict(zip(named, grads))


def zero(grad):
    return grad is None or not grad.any()


def parts(model):
    """The model's parameters by name, split as the optimizer groups them."""
    named = dict(model.named_parameters())
    adapter = {name: p for name, p in named.items() if '.adapter.' in name}
    backend = {name: p for name, p in named.items() if name.startswith(('backend.', 'head.'))}
    backbone = {name: p for name, p in named.items() if name not in adapter and name not in backend}
    return named, adapter, backend, backbone


@pytest.mark.parametrize('stable', [False, True], ids=['post-LN', 'pre-LN'])
@pytest.mark.parametrize('trained_adapters', [False, True], ids=['fresh-adapters', 'trained-adapters'])
def test_kd_loss_trains_the_backbone_only(stable, trained_adapters):
    teacher, model = build(stable, trained_adapters)
    kd_loss, _ = step_loss_terms(model, teacher, make_batch())
    named, adapter, backend, backbone = parts(model)
    grads = gradients(kd_loss, named)
    # the KD path runs without adapters: even a fresh adapter (up = 0) would give `up` a gradient if it ran
    assert all(zero(grads[name]) for name in adapter), [name for name in adapter if not zero(grads[name])]
    assert all(zero(grads[name]) for name in backend), [name for name in backend if not zero(grads[name])]
    missed = [name for name in backbone if name not in MASK_ONLY and zero(grads[name])]
    assert missed == []
    assert {name.split('.')[2] for name in backbone} >= {'feature_extractor', 'feature_projection', 'encoder'}


@pytest.mark.parametrize('stable', [False, True], ids=['post-LN', 'pre-LN'])
def test_sv_loss_reaches_fresh_adapters_through_up_only(stable):
    """With `up` zero the adapter's output does not depend on down or its LayerNorm yet, so only
    `up` can get a gradient; it must get one, or the adapters would never start to learn."""
    teacher, model = build(stable)
    _, sv_loss = step_loss_terms(model, teacher, make_batch())
    named, adapter, backend, backbone = parts(model)
    grads = gradients(sv_loss, named)
    ups = [name for name in adapter if '.up.' in name]
    assert len(ups) == 2 * ARGS['num_hidden_layers']
    assert all(not zero(grads[name]) for name in ups), [name for name in ups if zero(grads[name])]
    assert all(zero(grads[name]) for name in adapter if name not in ups)
    assert all(not zero(grads[name]) for name in backend), [name for name in backend if zero(grads[name])]
    assert not zero(grads['student.ssl.feature_extractor.conv_layers.0.conv.weight'])


@pytest.mark.parametrize('stable', [False, True], ids=['post-LN', 'pre-LN'])
def test_sv_loss_reaches_every_weight_of_trained_adapters(stable):
    teacher, model = build(stable, trained_adapters=True)
    _, sv_loss = step_loss_terms(model, teacher, make_batch())
    named, adapter, backend, backbone = parts(model)
    grads = gradients(sv_loss, named)
    assert len(adapter) == 6 * ARGS['num_hidden_layers']  # LayerNorm, down, up: weight and bias each
    assert all(not zero(grads[name]) for name in adapter), [name for name in adapter if zero(grads[name])]
    missed = [name for name in backbone if name not in MASK_ONLY and zero(grads[name])]
    assert missed == []


def test_kd_and_sv_gradients_add_up_to_the_training_steps():
    """The step's one backward of KD + SV gives the backbone both, the rest the SV part alone
    (float64, so that the two ways of summing agree to rounding)."""
    teacher, model = build(trained_adapters=True)
    teacher, model = teacher.double(), model.double()
    clean, augmented, labels = make_batch()
    batch = clean.double(), augmented.double(), labels
    named = dict(model.named_parameters())
    kd_loss, sv_loss = step_loss_terms(model, teacher, batch)
    kd, sv = gradients(kd_loss, named), gradients(sv_loss, named)
    seed(2)
    total, _ = step_losses(model, teacher, *batch, KD_WEIGHT)
    total.backward()
    for name, p in named.items():
        expected = sum(g for g in (kd[name], sv[name]) if g is not None)
        torch.testing.assert_close(p.grad, expected + torch.zeros_like(p), rtol=1e-9, atol=1e-12, msg=name)


def adapted_teacher_by_hand(teacher, model):
    """wave (1, L) -> (1, T, D): a plain Hugging Face copy of the teacher's first layers, eval mode,
    each layer's feed-forward block given s * up(relu(down(LN_a(h)))) by a hook, h the residual
    stream entering the block, with the weights of the model's adapter of that layer."""
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = ARGS['num_hidden_layers']
    ssl = type(teacher)(config).eval()
    ssl.load_state_dict(teacher.state_dict(), strict=False)  # the teacher's later layers left out
    entering = {}
    for layer, adapter in zip(ssl.encoder.layers, model.student.adapters()):
        norm, down, up = adapter.layer_norm, adapter.down, adapter.up

        def add_adapter(module, inputs, output, norm=norm, down=down, up=up):
            h = F.layer_norm(entering['h'], norm.normalized_shape, norm.weight, norm.bias, norm.eps)
            return output + ARGS['adapter_scale'] * F.linear(
                torch.relu(F.linear(h, down.weight, down.bias)), up.weight, up.bias
            )

        block_input = layer.final_layer_norm if teacher.config.do_stable_layer_norm else layer.feed_forward
        block_input.register_forward_pre_hook(lambda module, inputs: entering.update(h=inputs[0]))
        layer.feed_forward.register_forward_hook(add_adapter)
    return lambda wave: ssl(wave).last_hidden_state


@pytest.mark.parametrize('stable', [False, True], ids=['post-LN', 'pre-LN'])
def test_embed_runs_through_every_adapter_and_is_deterministic_in_eval(stable):
    teacher, model = build(stable, trained_adapters=True, trained_norms=True)
    model.eval()
    wave = make_batch()[1]
    with torch.no_grad():
        torch.manual_seed(3)
        embedding = model.embed(wave)  # (B, E)
        torch.manual_seed(4)  # other draws: nothing random may run
        torch.testing.assert_close(model.embed(wave), embedding, rtol=0, atol=0)
        # each utterance alone through the adapted teacher by hand and the back-end, and a padded
        # batch of the utterances cut to other lengths: each row its utterance's embedding alone
        hand = adapted_teacher_by_hand(teacher, model)
        cut = torch.tensor([8000, 5600, 6400])
        padded = model.embed(wave * (torch.arange(wave.shape[1]) < cut[:, None]), cut)  # (B, E)
        for row, length in enumerate(cut.tolist()):
            alone = model.backend(hand(wave[row : row + 1]))  # (1, E)
            torch.testing.assert_close(embedding[row : row + 1], alone, rtol=1e-5, atol=1e-5)
            alone = model.backend(hand(wave[row : row + 1, :length]))
            torch.testing.assert_close(padded[row : row + 1], alone, rtol=1e-5, atol=1e-5)
        without = model.backend(model.student(wave, adapters=False))
        assert (without - embedding).norm() > 1e-2 * embedding.norm()
        lengths = torch.full((wave.shape[0],), wave.shape[1])
        for i, adapter in enumerate(model.student.adapters()):
            original = adapter.up.weight.clone()
            adapter.up.weight.add_(torch.randn_like(original) * 0.3)
            assert (model.embed(wave) - embedding).norm() > 1e-3 * embedding.norm(), f'adapter {i}'
            assert (model.embed(wave, lengths) - embedding).norm() > 1e-3 * embedding.norm(), f'adapter {i}'  # padded
            adapter.up.weight.copy_(original)
        torch.testing.assert_close(model.embed(wave), embedding, rtol=0, atol=0)


def test_every_parameter_is_in_exactly_one_optimizer_group():
    _, model = build()
    optimizer = build_optimizer(model)
    names = {id(p): name for name, p in model.named_parameters()}
    groups = {
        group['name']: [names.get(id(p), 'not in the model') for p in group['params']]
        for group in optimizer.param_groups
    }
    assert list(groups) == ['backend', 'student', 'adapter']
    counts = collections.Counter(name for members in groups.values() for name in members)
    assert [name for name, count in counts.items() if count > 1] == []
    assert set(counts) == set(names.values())  # none missing, none foreign
    _, adapter, backend, backbone = parts(model)
    assert set(groups['backend']) == set(backend)
    assert set(groups['student']) == set(backbone)
    assert set(groups['adapter']) == set(adapter)
    assert 'head.weight' in groups['backend'] and 'backend.conv1.0.weight' in groups['backend']
    assert all(name.startswith('student.') for name in groups['student'] + groups['adapter'])
    assert sum(p.numel() for group in optimizer.param_groups for p in group['params']) == count_parameters(model)
