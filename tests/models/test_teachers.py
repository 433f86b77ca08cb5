"""Every supported teacher type, saved with save_pretrained and loaded back through load_teacher:
the same weights, a student that copies them exactly and, adapters at zero, computes the teacher
truncated to N layers; input normalisation as Hugging Face's feature extractor does it."""

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import (
    BertConfig,
    HubertConfig,
    HubertModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForCTC,
    Wav2Vec2ForPreTraining,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
)

from models.aam import AAMSoftmax
from models.ecapa import EcapaTdnn
from models.hf_compat import attention_of
from models.speaker_net import SpeakerNet
from models.ssl import TeacherLoadError, load_teacher, normalize_waves, preprocessor_normalizes
from models.student import Student

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = dict(
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
STABLE = dict(do_stable_layer_norm=True, feat_extract_norm='layer')
TEACHERS = {  # name: (config class, model class, what differs from the default config)
    'wav2vec2': (Wav2Vec2Config, Wav2Vec2Model, {}),
    'wav2vec2-stable': (Wav2Vec2Config, Wav2Vec2Model, STABLE),
    'hubert': (HubertConfig, HubertModel, {}),
    'hubert-stable': (HubertConfig, HubertModel, STABLE),
    'wavlm': (WavLMConfig, WavLMModel, {}),
    'wavlm-stable': (WavLMConfig, WavLMModel, STABLE),
}
NUM_LAYERS = 2  # the student's, of the teacher's 3


def build(name, seed=0):
    """A randomly initialised tiny model of one teacher type (masked_spec_embed included)."""
    config_class, model_class, overrides = TEACHERS[name]
    torch.manual_seed(seed)
    return model_class(config_class(**TINY, **overrides)).eval()


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    """Each teacher type saved in its own folder: name -> (folder, the saved model)."""
    folders = {}
    for name in TEACHERS:
        model = build(name)
        folder = str(tmp_path_factory.mktemp(name))
        model.save_pretrained(folder)
        folders[name] = folder, model
    return folders


def make_wave(batch=2, samples=6000, seed=1):
    return torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))


def assert_same_weights(state, expected):
    assert set(state) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(state[name], tensor), name


def teacher_name(student_name):
    """The teacher's name of a student tensor: the adapter wrapper moves a layer's feed_forward
    (and, in pre-LN layers, its final_layer_norm) one level down."""
    return (
        student_name.removeprefix('ssl.')
        .replace('feed_forward.pre_norm.', 'final_layer_norm.')
        .replace('feed_forward.feed_forward.', 'feed_forward.')
    )


def truncated_reference(teacher, num_layers):
    """The teacher's config with num_layers layers, holding the teacher's weights (loaded strictly:
    the only weights left out are those of the layers beyond)."""
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = num_layers
    reference = type(teacher)(config).eval()
    state = teacher.state_dict()
    kept = {name: tensor for name, tensor in state.items() if name in reference.state_dict()}
    reference.load_state_dict(kept, strict=True)
    dropped = {name.split('.')[2] for name in set(state) - set(kept)}
    assert all(name.startswith('encoder.layers.') for name in set(state) - set(kept)) and dropped == {
        str(i) for i in range(num_layers, teacher.config.num_hidden_layers)
    }
    return reference


def teacher_at_layer(teacher, wave, num_layers):
    """The teacher's own residual stream after layer num_layers (captured in its full forward),
    with the encoder's final LayerNorm applied where the model is pre-LN: there the full model
    normalises only its last layer's output. (B, L) -> (B, T, D)."""
    seen = {}
    hook = teacher.encoder.layers[num_layers - 1].register_forward_hook(
        lambda module, args, out: seen.update(out=out[0] if isinstance(out, tuple) else out)
    )
    teacher(wave)
    hook.remove()
    return teacher.encoder.layer_norm(seen['out']) if teacher.config.do_stable_layer_norm else seen['out']


@pytest.mark.parametrize('name', list(TEACHERS))
def test_folder_loads_the_saved_weights_frozen(saved, name):
    folder, model = saved[name]
    teacher = load_teacher(folder, {})
    assert type(teacher) is type(model)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert_same_weights(teacher.state_dict(), model.state_dict())
    assert attention_of(teacher.config) == ('eager' if name.startswith('wavlm') else 'sdpa')
    assert teacher.config.do_stable_layer_norm == (name.endswith('stable'))


@pytest.mark.parametrize('name', list(TEACHERS))
def test_student_holds_exactly_the_teacher_weights_it_copies(saved, name):
    teacher = load_teacher(saved[name][0], {})
    student = Student(teacher, NUM_LAYERS)
    copied = {teacher_name(key): tensor for key, tensor in student.state_dict().items() if '.adapter.' not in key}
    teacher_state = teacher.state_dict()
    beyond = tuple(f'encoder.layers.{i}.' for i in range(NUM_LAYERS, TINY['num_hidden_layers']))
    assert set(copied) == {key for key in teacher_state if not key.startswith(beyond)}
    for key in (
        'feature_extractor.conv_layers.0.conv.weight',
        'feature_projection.projection.weight',
        'encoder.pos_conv_embed.conv.bias',
        'encoder.layer_norm.weight',
        'masked_spec_embed',
        f'encoder.layers.{NUM_LAYERS - 1}.final_layer_norm.weight',
    ):
        assert key in copied, key
    for key, tensor in copied.items():
        assert torch.equal(tensor, teacher_state[key]), key


@pytest.mark.parametrize('name', list(TEACHERS))
def test_student_at_init_computes_the_truncated_teacher(saved, name):
    teacher = load_teacher(saved[name][0], {})
    student = Student(teacher, NUM_LAYERS).eval()
    wave = make_wave()
    with torch.no_grad():
        reference = truncated_reference(teacher, NUM_LAYERS)(wave).last_hidden_state  # (B, T, D)
        torch.testing.assert_close(teacher_at_layer(teacher, wave, NUM_LAYERS), reference, rtol=0, atol=1e-5)
        kd, sv = student.forward_two_paths(wave)
        for output in (student(wave, adapters=False), student(wave, adapters=True), kd, sv):
            torch.testing.assert_close(output, reference, rtol=0, atol=1e-5)
        full = teacher(wave).last_hidden_state
    assert (reference - full).abs().max() > 1e-2  # the truncation is not the whole teacher


@pytest.mark.parametrize('name', ['wav2vec2', 'hubert'])
def test_eager_attention_computes_what_sdpa_does(saved, name):
    folder = saved[name][0]
    eager, sdpa = load_teacher(folder, {}, attention='eager'), load_teacher(folder, {}, attention='sdpa')
    assert attention_of(eager.config) == 'eager'
    wave = make_wave()
    with torch.no_grad():
        torch.testing.assert_close(eager(wave).last_hidden_state, sdpa(wave).last_hidden_state, rtol=0, atol=1e-5)


@pytest.mark.parametrize('head_class', [Wav2Vec2ForPreTraining, Wav2Vec2ForCTC])
def test_checkpoint_with_a_head_loads_its_base_model(tmp_path, head_class):
    """Hub checkpoints are often saved with a head (wav2vec2-large-xlsr-53: ForPreTraining)."""
    torch.manual_seed(0)
    model = head_class(Wav2Vec2Config(**TINY, **STABLE, vocab_size=12, codevector_dim=16, proj_codevector_dim=16))
    model.save_pretrained(tmp_path)
    teacher = load_teacher(str(tmp_path), {})
    assert type(teacher) is Wav2Vec2Model
    assert_same_weights(teacher.state_dict(), model.wav2vec2.state_dict())


def test_old_weight_norm_names_load(tmp_path):
    """Checkpoints saved before torch's parametrized weight_norm name the positional conv's
    weight weight_g / weight_v (wav2vec2-large-xlsr-53 among them)."""
    model = build('wav2vec2-stable')
    old_names = {'parametrizations.weight.original0': 'weight_g', 'parametrizations.weight.original1': 'weight_v'}
    state = {}
    for name, tensor in model.state_dict().items():
        for new, old in old_names.items():
            name = name.replace(new, old)
        state[name] = tensor
    assert 'encoder.pos_conv_embed.conv.weight_g' in state
    model.config.save_pretrained(tmp_path)
    torch.save(state, tmp_path / 'pytorch_model.bin')
    assert_same_weights(load_teacher(str(tmp_path), {}).state_dict(), model.state_dict())


def test_float16_checkpoint_loads_in_float32(tmp_path):
    model = build('hubert').half()
    model.save_pretrained(tmp_path)
    teacher = load_teacher(str(tmp_path), {})
    assert {p.dtype for p in teacher.parameters()} == {torch.float32}
    assert {p.dtype for p in Student(teacher, NUM_LAYERS).parameters()} == {torch.float32}
    assert_same_weights(teacher.state_dict(), {name: t.float() for name, t in model.state_dict().items()})


def assert_names_the_argument(error, path):
    message = str(error.value)
    assert 'model_name_or_path' in message and path in message


def test_empty_folder_is_a_load_error(tmp_path):
    with pytest.raises(TeacherLoadError) as error:
        load_teacher(str(tmp_path), {})
    assert_names_the_argument(error, str(tmp_path))


def test_folder_of_another_model_type_is_a_value_error(tmp_path):
    BertConfig().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="'bert' model; supported types: wav2vec2, hubert, wavlm") as error:
        load_teacher(str(tmp_path), {})
    assert_names_the_argument(error, str(tmp_path))


def test_config_without_weights_is_a_load_error(tmp_path):
    Wav2Vec2Config(**TINY).save_pretrained(tmp_path)
    with pytest.raises(TeacherLoadError) as error:
        load_teacher(str(tmp_path), {})
    assert_names_the_argument(error, str(tmp_path))


def test_weights_missing_from_the_checkpoint_are_a_load_error(tmp_path):
    """A config of 3 layers over the weights of 2: Hugging Face would fill layer 2 at random."""
    build('hubert').save_pretrained(tmp_path)
    config = json.loads((tmp_path / 'config.json').read_text())
    (tmp_path / 'config.json').write_text(json.dumps(dict(config, num_hidden_layers=4)))
    with pytest.raises(TeacherLoadError, match='lacks 16 weights .*encoder.layers.3.') as error:
        load_teacher(str(tmp_path), {})
    assert_names_the_argument(error, str(tmp_path))


def fake_hub_cache(cache, repo_id, folder):
    """The layout huggingface_hub gives a downloaded repo: snapshots/<commit>/ and refs/main."""
    repo = os.path.join(cache, 'models--' + repo_id.replace('/', '--'))
    commit = '0' * 40
    os.makedirs(os.path.join(repo, 'snapshots', commit))
    os.makedirs(os.path.join(repo, 'refs'))
    with open(os.path.join(repo, 'refs', 'main'), 'w') as file:
        file.write(commit)
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), 'rb') as source:
            data = source.read()
        with open(os.path.join(repo, 'snapshots', commit, name), 'wb') as target:
            target.write(data)


OFFLINE_SCRIPT = """
import json, sys
import torch
from models.ssl import TeacherLoadError, load_teacher, preprocessor_normalizes
folder, weights = sys.argv[1], sys.argv[2]
expected = torch.load(weights, weights_only=True)
report = {}
for source in (folder, 'someone/tiny-wavlm'):
    state = load_teacher(source, {}).state_dict()
    report[source] = set(state) == set(expected) and all(torch.equal(state[k], v) for k, v in expected.items())
try:
    load_teacher('someone/not-cached', {})
except TeacherLoadError as error:
    report['error'] = str(error)
report['normalizes'] = [preprocessor_normalizes(source) for source in (folder, 'someone/tiny-wavlm',
                                                                        'someone/not-cached')]
print(json.dumps(report))
"""


def test_offline_loads_a_folder_and_a_cached_hub_id(saved, tmp_path):
    """HF_HUB_OFFLINE=1 (read when huggingface_hub is imported, hence a fresh process)."""
    folder, model = saved['wavlm-stable']
    local = tmp_path / 'local'
    model.save_pretrained(local)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(local)
    fake_hub_cache(str(tmp_path / 'cache'), 'someone/tiny-wavlm', str(local))
    torch.save(model.state_dict(), tmp_path / 'weights.pt')
    env = dict(os.environ, HF_HUB_OFFLINE='1', HF_HUB_CACHE=str(tmp_path / 'cache'), PYTHONPATH=ROOT)
    result = subprocess.run(
        [sys.executable, '-c', OFFLINE_SCRIPT, str(local), str(tmp_path / 'weights.pt')],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report[str(local)] and report['someone/tiny-wavlm']
    assert "model_name_or_path='someone/not-cached'" in report['error'] and 'HF_HUB_OFFLINE' in report['error']
    assert report['normalizes'] == [True, True, None]


@pytest.mark.parametrize('name', ['wav2vec2-stable', 'hubert-stable', 'wavlm-stable', 'wav2vec2', 'hubert', 'wavlm'])
def test_padded_batch_embeds_as_one_at_a_time(saved, name):
    """feat_extract_norm='layer' normalises each frame alone, so padding changes nothing; the
    group norm of base models normalises over time, so their first CNN layer must not see it."""
    torch.manual_seed(0)
    student = Student(load_teacher(saved[name][0], {}), NUM_LAYERS)
    assert student.ssl.config.feat_extract_norm == ('layer' if name.endswith('-stable') else 'group')
    for adapter in student.adapters():
        torch.nn.init.normal_(adapter.up.weight, std=0.1)
    model = SpeakerNet(student, EcapaTdnn(32, channels=16, embedding_size=16), AAMSoftmax(16, 4)).eval()
    lengths = torch.tensor([9000, 4000, 6500])
    waves = make_wave(3, 9000) * (torch.arange(9000) < lengths[:, None])
    with torch.no_grad():
        padded = model.embed(waves, lengths)  # (B, E)
        alone = torch.cat([model.embed(wave[None, :length]) for wave, length in zip(waves, lengths)])
    torch.testing.assert_close(padded, alone, rtol=0, atol=1e-4)
    assert torch.pdist(alone).min() > 1e-2


def feature_extractor_normalised(waves, lengths=None):
    """Hugging Face's own normalisation (numpy, float64) of zero-padded waves. (B, L) -> (B, L)."""
    extractor = Wav2Vec2FeatureExtractor(do_normalize=True)
    arrays = [wave.double().numpy() for wave in waves]
    mask = None if lengths is None else (np.arange(waves.shape[1]) < lengths.numpy()[:, None]).astype(np.int32)
    return torch.from_numpy(np.stack(extractor.zero_mean_unit_var_norm(arrays, mask)))


def varied_waves():
    """Waves of different scales and offsets, one nearly silent (where the 1e-7 floor matters)."""
    waves = make_wave(4, 3000, seed=3)
    return waves * torch.tensor([[1.0], [0.01], [3e-4], [5.0]]) + torch.tensor([[0.0], [0.2], [0.0], [-1.0]])


def test_normalize_waves_matches_the_feature_extractor():
    waves = varied_waves()
    normalised = normalize_waves(waves)
    torch.testing.assert_close(normalised.double(), feature_extractor_normalised(waves), rtol=0, atol=1e-5)
    assert normalised.dtype == waves.dtype
    torch.testing.assert_close(normalised[0].mean(), torch.tensor(0.0), rtol=0, atol=1e-6)
    torch.testing.assert_close(normalised[0].std(unbiased=False), torch.tensor(1.0), rtol=0, atol=1e-5)


def test_masked_normalisation_is_that_of_the_valid_part_alone():
    lengths = torch.tensor([3000, 1200, 2500, 1])
    waves = varied_waves() * (torch.arange(3000) < lengths[:, None])
    normalised = normalize_waves(waves, lengths)
    torch.testing.assert_close(normalised.double(), feature_extractor_normalised(waves, lengths), rtol=0, atol=1e-5)
    for i, length in enumerate(lengths.tolist()):
        alone = normalize_waves(waves[i : i + 1, :length])[0]  # the valid part alone
        torch.testing.assert_close(normalised[i, :length], alone, rtol=0, atol=1e-6)
        assert torch.equal(normalised[i, length:], torch.zeros(3000 - length))


def test_preprocessor_normalizes_reads_the_folder(tmp_path):
    assert preprocessor_normalizes('tiny') is None
    assert preprocessor_normalizes(str(tmp_path)) is None  # no such file
    assert preprocessor_normalizes(str(tmp_path / 'not-a-folder')) is None
    for do_normalize in (True, False):
        Wav2Vec2FeatureExtractor(do_normalize=do_normalize).save_pretrained(tmp_path)
        assert preprocessor_normalizes(str(tmp_path)) is do_normalize
    (tmp_path / 'preprocessor_config.json').write_text('{"sampling_rate": 16000}')
    assert preprocessor_normalizes(str(tmp_path)) is True  # the feature extractor's default
    (tmp_path / 'preprocessor_config.json').write_text('not json')
    assert preprocessor_normalizes(str(tmp_path)) is None


def speaker_net(normalize_wave):
    torch.manual_seed(0)
    student = Student(build('wav2vec2-stable'), NUM_LAYERS)
    for adapter in student.adapters():
        torch.nn.init.normal_(adapter.up.weight, std=0.1)
    backend, head = EcapaTdnn(32, channels=16, embedding_size=16), AAMSoftmax(16, 4)
    return SpeakerNet(student, backend, head, normalize_wave=normalize_wave).eval()


def test_speaker_net_normalises_its_input_when_asked():
    lengths = torch.tensor([9000, 5000])
    waves = 0.05 * make_wave(2, 9000) * (torch.arange(9000) < lengths[:, None]) + 0.01
    waves[1, 5000:] = 0
    normalising, plain = speaker_net(True), speaker_net(False)
    assert SpeakerNet(plain.student, plain.backend, plain.head).normalize_wave is False
    labels = torch.tensor([0, 3])
    with torch.no_grad():
        torch.testing.assert_close(normalising.embed(waves), plain.embed(normalize_waves(waves)), rtol=0, atol=0)
        torch.testing.assert_close(
            normalising.embed(waves, lengths), plain.embed(normalize_waves(waves, lengths), lengths), rtol=0, atol=0
        )
        for paths in ('kd+sv', 'kd', 'sv'):
            torch.testing.assert_close(
                normalising(waves, labels, paths), plain(normalize_waves(waves), labels, paths), rtol=0, atol=0
            )
        assert (normalising.embed(waves) - plain.embed(waves)).abs().max() > 1e-2
