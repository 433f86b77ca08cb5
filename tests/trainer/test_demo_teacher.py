"""The demo's trained teacher (model_name_or_path=demo-teacher): trained once by the ft method,
saved with save_pretrained, scored, reused while its recipe is unchanged and trained anew when it
changes; a run that dies while training it leaves nothing that looks finished."""

import json
import os

import pytest
import torch

import arguments
import main
import trainer.demo_teacher as demo_teacher
from arguments import get_args
from models.ssl import load_teacher
from tests.conftest import FAST, SMALL_DEMO
from tests.trainer.test_oskdft import TINY
from trainer.demo_teacher import INFO_FILE, SSL_PREFIX, prepare_demo_teacher, teacher_folder

# a teacher of a few seconds: the small test corpus, one epoch of FAST sizes
RECIPE = {
    'ssl': TINY,
    'corpus': SMALL_DEMO,
    'training': {
        'method': 'ft',
        'best_model': 'last',
        'epoch': 1,
        'T_0': 1,
        'batch_size': 4,
        'ecapa_channels': 16,
        'embedding_size': 32,
        'num_test_frames': 100,
        'num_workers': 0,
    },
}
CPU = torch.device('cpu')


@pytest.fixture(scope='module')
def made(corpus, tmp_path_factory):
    """python main.py ... model_name_or_path=demo-teacher with RECIPE as the recipe, counting the
    teacher's trainings: (path_cache, the experiment's run folder, the teacher's folder, trainings)."""
    cache, path_log = tmp_path_factory.mktemp('cache'), tmp_path_factory.mktemp('exp')
    trainings = []
    train = demo_teacher.train
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(arguments, 'DEMO_TEACHER', RECIPE)
        patch.setattr(demo_teacher, 'train', lambda *args: trainings.append(args[0]) or train(*args))
        paths = [f'{key}={value}' for key, value in corpus.items()]
        main.main(
            paths + FAST + ['model_name_or_path=demo-teacher', 'epoch=1', f'path_cache={cache}', f'path_log={path_log}']
        )
    (run_dir,) = (path_log / 'OS-KDFT').iterdir()
    return cache, run_dir, teacher_folder(str(cache), RECIPE), trainings


def machine_args(cache):
    return {**get_args(FAST)[0], 'path_cache': str(cache)}


def test_the_teacher_is_the_ssl_model_its_ft_run_trained(made):
    _, _, folder, trainings = made
    assert len(trainings) == 1 and trainings[0]['method'] == 'ft' and trainings[0]['model_name_or_path'] == 'tiny'
    info = json.loads(open(os.path.join(folder, INFO_FILE)).read())
    state = torch.load(os.path.join(folder, info['run'], 'best.pt'), weights_only=True)
    assert state['args']['method'] == 'ft' and state['epoch'] == 1
    teacher = load_teacher(folder, {}).state_dict()
    trained = {
        name[len(SSL_PREFIX) :]: tensor for name, tensor in state['model'].items() if name.startswith(SSL_PREFIX)
    }
    assert set(trained) == set(teacher)
    for name, tensor in teacher.items():
        assert torch.equal(tensor, trained[name]), name
    torch.manual_seed(state['args']['seed'])  # the random initialisation its training started from
    initial = load_teacher('tiny', TINY).state_dict()
    name = 'encoder.layers.0.feed_forward.output_dense.weight'
    assert not torch.equal(teacher[name], initial[name])  # it trained


def test_the_teacher_is_scored_and_the_run_log_says_so(made):
    _, run_dir, folder, _ = made
    info = json.loads(open(os.path.join(folder, INFO_FILE)).read())
    results = json.loads(open(os.path.join(folder, info['run'], 'results.json')).read())
    assert set(info['lists']) == {'Vox1-O', 'Vox1-E', 'Vox1-H'}
    for name, result in info['lists'].items():
        assert result['eer'] == results[name]['eer'] and result['trials'] == results[name]['trials']
    assert info['lists']['Vox1-O']['trials'] == 16  # the small corpus's Vox1-O
    log = (run_dir / 'log.txt').read_text()
    assert f'demo teacher: {folder}, trained now in' in log
    assert f'Vox1-O EER {info["lists"]["Vox1-O"]["eer"]:.2f} %' in log


def test_the_experiment_learns_from_the_teachers_folder(made):
    _, run_dir, folder, _ = made
    assert json.loads((run_dir / 'parameters.json').read_text())['model_name_or_path'] == folder
    state = torch.load(run_dir / 'best.pt', weights_only=True)
    teacher = load_teacher(folder, {}).state_dict()
    front = 'feature_extractor.conv_layers.0.conv.weight'
    assert state['args']['model_name_or_path'] == folder
    assert state['ssl_config']['hidden_size'] == TINY['hidden_size'] != arguments.TINY_SSL['hidden_size']
    assert state['model'][SSL_PREFIX + front].shape == teacher[front].shape


def test_an_unchanged_recipe_reuses_the_teacher(made, monkeypatch):
    cache, _, folder, _ = made
    before = {name: os.path.getmtime(os.path.join(folder, name)) for name in os.listdir(folder)}

    def no_training(*args, **kwargs):
        raise AssertionError('the cached teacher was trained again')

    monkeypatch.setattr(demo_teacher, 'train', no_training)
    reused, note = prepare_demo_teacher(machine_args(cache), CPU, RECIPE)
    assert reused == folder and note.startswith(f'demo teacher: {folder}, reused;')
    assert {name: os.path.getmtime(os.path.join(folder, name)) for name in os.listdir(folder)} == before


def test_a_changed_recipe_trains_a_new_teacher_and_keeps_the_old(made, monkeypatch):
    cache, _, folder, _ = made
    calls = []
    train = demo_teacher.train
    monkeypatch.setattr(demo_teacher, 'train', lambda *args: calls.append(args[0]) or train(*args))
    changed = {**RECIPE, 'training': {**RECIPE['training'], 'lr': 5e-4}}
    other, _ = prepare_demo_teacher(machine_args(cache), CPU, changed)
    assert other != folder and other == teacher_folder(str(cache), changed)
    assert len(calls) == 1 and calls[0]['lr'] == 5e-4
    for made_folder in (folder, other):
        assert os.path.isfile(os.path.join(made_folder, 'model.safetensors'))
    assert sorted(os.listdir(os.path.dirname(folder))) == sorted(map(os.path.basename, (folder, other)))


def test_a_run_killed_while_training_the_teacher_leaves_none_and_the_next_trains_it(made, monkeypatch):
    cache = made[0]
    recipe = {**RECIPE, 'training': {**RECIPE['training'], 'lr': 2e-4}}
    folder = teacher_folder(str(cache), recipe)
    before = set(os.listdir(os.path.dirname(folder)))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo_teacher, 'train', killed)
    with pytest.raises(KeyboardInterrupt):
        prepare_demo_teacher(machine_args(cache), CPU, recipe)
    assert set(os.listdir(os.path.dirname(folder))) == before  # neither the teacher nor its scratch folder
    monkeypatch.undo()
    made_now, note = prepare_demo_teacher(machine_args(cache), CPU, recipe)
    assert made_now == folder and 'trained now' in note and os.path.isfile(os.path.join(folder, INFO_FILE))


def test_a_changed_demo_preset_value_trains_a_new_teacher(made, monkeypatch, tmp_path):
    cache, _, folder, _ = made
    monkeypatch.setitem(arguments.DEMO, 'epoch', 99)  # the recipe sets its own epoch: the same teacher
    assert teacher_folder(str(cache), RECIPE) == folder
    monkeypatch.setitem(arguments.DEMO, 'spec_mask_freq', 7)  # a value the recipe takes from the preset
    assert teacher_folder(str(cache), RECIPE) != folder
    settings = demo_teacher.training_args(RECIPE, machine_args(cache), str(tmp_path))
    assert settings['spec_mask_freq'] == 7 and settings['epoch'] == 1 and settings['num_workers'] == 0
