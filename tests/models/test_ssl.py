import pytest
import torch
from transformers import BertConfig, Wav2Vec2Model, WavLMConfig, WavLMModel

from models.hf_compat import attention_of
from models.ssl import TeacherLoadError, count_parameters, frozen_forward, load_teacher

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)


def assert_frozen(model):
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())


def test_tiny_teacher_is_a_seeded_frozen_wav2vec2():
    torch.manual_seed(5)
    first = load_teacher('tiny', TINY)
    torch.manual_seed(5)
    second = load_teacher('tiny', TINY)
    assert type(first) is Wav2Vec2Model
    assert first.config.hidden_size == 32 and first.config.num_hidden_layers == 2
    assert_frozen(first)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name


def test_local_folder_loads_the_saved_weights(tmp_path):
    torch.manual_seed(0)
    saved = Wav2Vec2Model(Wav2Vec2Model.config_class(**TINY))
    saved.save_pretrained(tmp_path)
    loaded = load_teacher(str(tmp_path), {})
    assert type(loaded) is Wav2Vec2Model
    assert_frozen(loaded)
    for name, tensor in saved.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_wavlm_folder_loads_with_eager_attention(tmp_path):
    WavLMModel(WavLMConfig(**TINY)).save_pretrained(tmp_path)
    loaded = load_teacher(str(tmp_path), {})
    assert type(loaded) is WavLMModel
    assert attention_of(loaded.config) == 'eager'


def test_missing_path_names_the_argument(tmp_path):
    missing = str(tmp_path / 'no_such_model')
    with pytest.raises(TeacherLoadError) as error:
        load_teacher(missing, {})
    assert 'model_name_or_path' in str(error.value) and missing in str(error.value)
    assert 'network' in str(error.value)


def test_unsupported_model_type_lists_the_supported_ones(tmp_path):
    BertConfig().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match='supported types: wav2vec2, hubert, wavlm') as error:
        load_teacher(str(tmp_path), {})
    assert str(tmp_path) in str(error.value) and "'bert'" in str(error.value)


def test_frozen_forward_gives_the_last_hidden_state_without_a_graph():
    torch.manual_seed(0)
    teacher = load_teacher('tiny', TINY)
    wave = torch.randn(2, 8000)
    hidden = frozen_forward(teacher, wave)
    assert hidden.shape == (2, 24, 32)
    assert not hidden.requires_grad
    assert torch.equal(hidden, teacher(wave).last_hidden_state)


def test_count_parameters():
    assert count_parameters(torch.nn.Linear(3, 4)) == 16
    assert count_parameters(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))) == 24
