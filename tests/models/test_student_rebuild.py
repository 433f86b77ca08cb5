"""The student rebuilt from its own SSL config (no teacher)."""

import io

import pytest
import torch

from models.student import Student
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
