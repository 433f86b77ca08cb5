import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model, WavLMConfig, WavLMModel

from models.student import AdaptedFeedForward, Adapter, Student, run_layer

TINY = dict(
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
NO_REGULARISATION = dict(
    hidden_dropout=0.0,
    attention_dropout=0.0,
    activation_dropout=0.0,
    feat_proj_dropout=0.0,
    layerdrop=0.0,
    mask_time_prob=0.0,
    mask_feature_prob=0.0,
)
MODELS = {
    'wav2vec2': (Wav2Vec2Config, Wav2Vec2Model),
    'hubert': (HubertConfig, HubertModel),
    'wavlm': (WavLMConfig, WavLMModel),
}


def make_teacher(model_type='wav2vec2', stable=False, **overrides):
    config_class, model_class = MODELS[model_type]
    norm = 'layer' if stable else 'group'
    config = config_class(**TINY, do_stable_layer_norm=stable, feat_extract_norm=norm, **overrides)
    torch.manual_seed(0)
    return model_class(config).eval().requires_grad_(False)


def make_wave(batch=3, samples=8000):
    return torch.randn(batch, samples, generator=torch.Generator().manual_seed(1))


def randomise_adapters(student, seed=2):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in student.adapter_parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.5)


def teacher_name(student_name):
    """The teacher tensor a student tensor was copied from."""
    name = student_name.removeprefix('ssl.')
    return name.replace('feed_forward.pre_norm.', 'final_layer_norm.').replace(
        'feed_forward.feed_forward.', 'feed_forward.'
    )


@pytest.mark.parametrize('model_type', list(MODELS))
@pytest.mark.parametrize('stable', [False, True])
def test_copied_weights_equal_teacher(model_type, stable):
    teacher = make_teacher(model_type, stable)
    student = Student(teacher, num_layers=2)
    teacher_state = teacher.state_dict()
    copied = {teacher_name(name): tensor for name, tensor in student.state_dict().items() if '.adapter.' not in name}
    expected = {name for name in teacher_state if not name.startswith('encoder.layers.2.')}
    assert set(copied) == expected
    assert 'masked_spec_embed' in copied and 'encoder.layer_norm.weight' in copied
    for name, tensor in copied.items():
        assert torch.equal(tensor, teacher_state[name]), name
    assert len(student.ssl.encoder.layers) == 2
    assert type(student.ssl) is type(teacher)


def test_student_keeps_the_training_regularisation():
    teacher = make_teacher(layerdrop=0.05, mask_time_prob=0.3, hidden_dropout=0.1)
    config = Student(teacher, 2).ssl.config
    assert (config.layerdrop, config.mask_time_prob, config.hidden_dropout, config.num_hidden_layers) == (
        0.05,
        0.3,
        0.1,
        2,
    )
    assert teacher.config.num_hidden_layers == 3


def test_parameter_groups_split_adapters_from_backbone():
    student = Student(make_teacher(), 2, bottleneck=8)
    adapters, backbone = student.adapter_parameters(), student.backbone_parameters()
    per_adapter = 2 * 32 + (32 * 8 + 8) + (8 * 32 + 32)  # LayerNorm, down, up
    assert sum(p.numel() for p in adapters) == 2 * per_adapter
    assert sum(p.numel() for p in adapters) + sum(p.numel() for p in backbone) == sum(
        p.numel() for p in student.parameters()
    )
    assert student.hidden_size == 32


@pytest.mark.parametrize('model_type', list(MODELS))
@pytest.mark.parametrize('stable', [False, True])
def test_paths_agree_at_init_and_adapters_change_only_the_sv_half(model_type, stable):
    student = Student(make_teacher(model_type, stable), 2).eval()
    wave = make_wave()
    with torch.no_grad():
        plain = student(wave, adapters=False)
        kd, sv = student.forward_two_paths(wave)
        torch.testing.assert_close(student(wave, adapters=True), plain, rtol=0, atol=1e-6)
        torch.testing.assert_close(kd, plain, rtol=0, atol=1e-6)
        torch.testing.assert_close(sv, plain, rtol=0, atol=1e-6)

        randomise_adapters(student)
        kd, sv = student.forward_two_paths(wave)
        torch.testing.assert_close(kd, plain, rtol=0, atol=1e-6)
        torch.testing.assert_close(sv, student(wave, adapters=True), rtol=0, atol=1e-6)
        assert (sv - plain).abs().mean() > 1e-2


def hand_layer(layer, x, with_adapter, stable):
    """One W2V2 encoder layer written out, adapter included: h + FFN(.) + s * up(relu(down(LN_a(h))))."""
    wrapper = layer.feed_forward
    adapter = wrapper.adapter
    ffn = wrapper.feed_forward
    if stable:
        h = x + layer.attention(layer.layer_norm(x))[0]
        out = h + ffn(wrapper.pre_norm(h))
    else:
        h = layer.layer_norm(x + layer.attention(x)[0])
        out = h + ffn(h)
    if with_adapter:
        out = out + adapter.scale * adapter.up(torch.relu(adapter.down(adapter.layer_norm(h))))
    return out if stable else layer.final_layer_norm(out)


@pytest.mark.parametrize('stable', [False, True])
def test_adapted_layer_equals_hand_computation(stable):
    """run_layer over a batch whose rows from 2 on take the adapter: rows 0-1 the layer without it,
    rows 2-3 with it."""
    student = Student(make_teacher(stable=stable), 2, scale=0.3).eval()
    randomise_adapters(student)
    layer = student.ssl.encoder.layers[1]
    x = torch.randn(4, 25, 32, generator=torch.Generator().manual_seed(6))  # (N, T, D)
    with torch.no_grad():
        out, _ = run_layer(layer, x, None, None, 2, student.ssl.config)
        torch.testing.assert_close(out[:2], hand_layer(layer, x[:2], False, stable), rtol=0, atol=1e-5)
        torch.testing.assert_close(out[2:], hand_layer(layer, x[2:], True, stable), rtol=0, atol=1e-5)


def test_input_residual_adds_the_input_once_more():
    torch.manual_seed(3)
    adapter = Adapter(16, bottleneck=4, scale=0.1)
    up_weight = torch.randn(16, 4)
    with torch.no_grad():
        adapter.up.weight.copy_(up_weight)
    with_residual = copy.deepcopy(adapter)
    with_residual.input_residual = True
    h = torch.randn(2, 5, 16)
    expected = 0.1 * F.linear(torch.relu(adapter.down(adapter.layer_norm(h))), up_weight, adapter.up.bias)
    torch.testing.assert_close(adapter(h), expected)
    assert torch.equal(with_residual(h), adapter(h) + h)
    assert Student(make_teacher(), 1, input_residual=True).ssl.encoder.layers[0].feed_forward.adapter.input_residual


def test_adapter_starts_at_zero():
    adapter = Adapter(16, bottleneck=4)
    assert torch.equal(adapter(torch.randn(3, 16)), torch.zeros(3, 16))


def test_adapter_biases_and_up_start_at_zero_down_weight_random():
    torch.manual_seed(4)
    adapter = Adapter(16, bottleneck=4)
    assert not adapter.down.bias.any() and not adapter.up.weight.any() and not adapter.up.bias.any()
    assert 0.1 < adapter.down.weight.std() < 0.2 and adapter.down.weight.abs().max() <= 0.25  # U(+-1/sqrt(16))
    # hand case: LN([3, 1]) = [1, -1]; down = 2 * 1 + bias 0; up = [2, 2]; x scale 0.5 -> [1, 1]
    small = Adapter(2, bottleneck=1, scale=0.5)
    with torch.no_grad():
        small.down.weight.copy_(torch.tensor([[2.0, 0.0]]))
        small.up.weight.fill_(1.0)
    torch.testing.assert_close(small(torch.tensor([[3.0, 1.0]])), torch.tensor([[1.0, 1.0]]), rtol=0, atol=1e-4)


def test_wrapper_rows():
    ffn = torch.nn.Linear(4, 4)
    adapter = Adapter(4, 2, scale=1.0, input_residual=True)  # up = 0: adds exactly h
    wrapper = AdaptedFeedForward(ffn, adapter)
    h = torch.randn(4, 3, 4)
    for sv_from, expected in ((None, ffn(h)), (0, ffn(h) + h), (2, torch.cat([ffn(h[:2]), ffn(h[2:]) + h[2:]]))):
        assert torch.equal(wrapper(h, sv_from), expected)


def loss_of_paths(kd, sv, target, direction):
    return F.mse_loss(kd, target) * 100 + (sv * direction).mean()


GRADIENT_CASES = [
    ('wav2vec2', False, NO_REGULARISATION),
    ('wav2vec2', True, NO_REGULARISATION),
    ('hubert', False, NO_REGULARISATION),
    ('wavlm', True, NO_REGULARISATION),
    ('wav2vec2', False, dict(layerdrop=0.3, mask_time_prob=0.2, mask_time_length=2)),
]


@pytest.mark.parametrize('model_type,stable,regularisation', GRADIENT_CASES)
def test_gradients_equal_the_duplicated_batch_formulation(model_type, stable, regularisation):
    # float64, so that the only differences left are those of the formulation, not of summation order;
    # with dropout/LayerDrop/masking on, both formulations draw them in the same order from the same seeds
    student = Student(make_teacher(model_type, stable, **regularisation), 2).train()
    randomise_adapters(student)
    student.double()
    reference = copy.deepcopy(student)
    wave = make_wave().double()
    results = []
    for two_paths in (student.forward_two_paths, reference.forward_two_paths_duplicated):
        torch.manual_seed(4)
        np.random.seed(4)
        kd, sv = two_paths(wave)
        generator = torch.Generator().manual_seed(5)
        target, direction = torch.randn(kd.shape, generator=generator), torch.randn(sv.shape, generator=generator)
        loss_of_paths(kd, sv, target.double(), direction.double()).backward()
        results.append((kd, sv))
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=1e-10)
    for (name, p), q in zip(student.named_parameters(), reference.parameters()):
        assert (p.grad is None) == (q.grad is None), name  # a layer LayerDrop skipped has none
        if regularisation is NO_REGULARISATION:
            assert p.grad is not None, name
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-9, msg=name)
    assert student.ssl.feature_extractor.conv_layers[0].conv.weight.grad.abs().sum() > 0


def test_each_half_gets_its_own_time_mask():
    overrides = {**NO_REGULARISATION, 'mask_time_prob': 0.5, 'mask_time_length': 2}
    student = Student(make_teacher(**overrides), 2).train()
    wave = make_wave(batch=4)
    np.random.seed(0)  # Hugging Face draws the mask positions with numpy
    with torch.no_grad():
        kd, sv = student.forward_two_paths(wave)
        student.eval()
        plain = student(wave, adapters=False)
    assert not torch.allclose(kd, sv)  # adapters add 0 here: only the masks differ
    assert not torch.allclose(kd, plain)
