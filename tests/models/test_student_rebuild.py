"""The student rebuilt from its own SSL config (no teacher), and its inference copy whose adapters
are on for every row."""

import io

import pytest
import torch

from models.student import AdaptedFeedForward, AdaptedFeedForwardAlwaysOn, Student, adapters_always_on
from tests.models.test_student import MODELS, make_teacher, make_wave, randomise_adapters


def saved_and_loaded(value):
    """value after torch.save and torch.load(weights_only=True), as a checkpoint carries it."""
    buffer = io.BytesIO()
    torch.save({'value': value}, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)['value']


@pytest.mark.parametrize('model_type', list(MODELS))
@pytest.mark.parametrize('stable', [False, True])
def test_student_from_its_config_takes_the_weights_and_computes_the_same(model_type, stable):
    student = Student(make_teacher(model_type, stable), 2).eval()
    randomise_adapters(student)
    config = saved_and_loaded(student.ssl.config.to_dict())
    torch.manual_seed(5)  # other random weights than the student's
    rebuilt = Student(None, None, ssl_config=config)
    assert type(rebuilt.ssl) is type(student.ssl) and len(rebuilt.ssl.encoder.layers) == 2
    before = rebuilt.state_dict()['ssl.encoder.layers.0.attention.k_proj.weight'].clone()
    rebuilt.load_state_dict(student.state_dict())  # strict: the same names and shapes
    assert not torch.equal(before, student.state_dict()['ssl.encoder.layers.0.attention.k_proj.weight'])
    rebuilt.eval()
    wave = make_wave()
    with torch.no_grad():
        for adapters in (True, False):
            assert torch.equal(rebuilt(wave, adapters=adapters), student(wave, adapters=adapters))


def test_an_unknown_ssl_type_is_named():
    config = Student(make_teacher(), 1).ssl.config.to_dict()
    with pytest.raises(ValueError, match="saved SSL config is of a 'whisper' model; supported types: wav2vec2, "):
        Student(None, None, ssl_config=dict(config, model_type='whisper'))


@pytest.mark.parametrize('stable', [False, True])
def test_inference_copy_has_the_adapters_on_every_row_whatever_sv_from_was_left_at(stable):
    student = Student(make_teacher(stable=stable), 2).eval()
    randomise_adapters(student)
    wave = make_wave(batch=3)
    with torch.no_grad():
        expected = student(wave, adapters=True)  # (3, T, D)
        without = student(wave, adapters=False)
        student.forward_two_paths(wave[:1])  # leaves sv_from = 1 in every layer
        copied = adapters_always_on(student)
        got = copied(wave)
    assert torch.equal(got, expected)
    assert (got - without).abs().amax(dim=(1, 2)).min() > 1e-2  # every row took its adapters
    assert not any(isinstance(m, AdaptedFeedForward) or hasattr(m, 'sv_from') for m in copied.modules())
    assert sum(isinstance(m, AdaptedFeedForwardAlwaysOn) for m in copied.modules()) == 2
    assert all(isinstance(layer.feed_forward, AdaptedFeedForward) for layer in student.ssl.encoder.layers)
    originals = {p.data_ptr() for p in student.parameters()}
    assert not originals & {p.data_ptr() for p in copied.parameters()}


def test_inference_copy_of_a_student_without_adapters_is_the_plain_model():
    student = Student(make_teacher(), 2, with_adapters=False).eval()
    wave = make_wave()
    with torch.no_grad():
        assert torch.equal(adapters_always_on(student)(wave), student(wave))
