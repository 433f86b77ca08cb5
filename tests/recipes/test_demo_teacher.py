"""The shipped demo teacher: loaded by name with no network, its record true to it (its validation EER
re-scored, its recipe hash that of the recipe as it stands), and the recipe that makes it run end to
end at a tiny size."""

import functools
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from data.demo import VAL_LIST, prepare_demo
from data.voxceleb import read_trials
from models.ssl import load_teacher
from recipes import demo_teacher
from tests.conftest import ROOT

RECORD = json.loads((demo_teacher.SHIPPED / demo_teacher.RECORD).read_text())
# the validation part of the standard demo corpus depends only on these sizes and the seed, so a corpus
# with few training and test speakers holds the same validation speakers, files and list
SMALL_WITH_VALIDATION = dict(
    num_train_speakers=2, num_test_speakers=4, num_vox1_o_speakers=2, num_musan_per_kind=1, num_rirs=1
)


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp('cache')


def test_the_shipped_teacher_loads_by_name_offline():
    """model_name_or_path=demo-teacher (the demo's default) resolves to the shipped folder, which loads
    with the hub switched off, every weight the safetensors file holds, in the recorded shape."""
    code = (
        'import main, json; from arguments import get_args; from models.ssl import load_teacher;'
        'args = get_args([])[0]; assert args["model_name_or_path"] == "demo-teacher";'
        'args, note = main.prepare(args); model = load_teacher(args["model_name_or_path"], {});'
        'print(json.dumps([args["model_name_or_path"], model.config.num_hidden_layers, note]))'
    )
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'PYTHONPATH': ROOT}
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    folder, layers, (note,) = json.loads(out.stdout.strip().splitlines()[-1])
    assert folder == str(demo_teacher.SHIPPED) and layers == RECORD['recipe']['shape']['num_hidden_layers']
    assert 'WARNING' not in note and f'{RECORD["population"]["num_speakers"]} speakers' in note
    model = load_teacher(str(demo_teacher.SHIPPED), {})
    saved = load_file(demo_teacher.SHIPPED / 'model.safetensors')
    state = model.state_dict()
    assert set(saved) <= set(state) and len(saved) >= len(state) - 1  # masked_spec_embed may be left out
    for name, tensor in saved.items():
        assert torch.equal(state[name], tensor), name


def test_the_record_matches_the_recipe_and_a_changed_recipe_is_noticed():
    assert RECORD['recipe_hash'] == demo_teacher.recipe_hash(demo_teacher.RECIPE)
    assert RECORD['recipe']['objective'] == demo_teacher.RECIPE['objective']
    path = demo_teacher.SHIPPED / demo_teacher.RECORD
    assert 'WARNING' not in demo_teacher.describe_teacher(str(path))
    changed = {**demo_teacher.RECIPE, 'lr': demo_teacher.RECIPE['lr'] * 2}
    assert 'recipes/demo_teacher.py has changed' in demo_teacher.describe_teacher(str(path), changed)
    assert RECORD['population']['num_speakers'] >= 5 * 90  # at least 5x the student's 90 training speakers
    assert RECORD['commit'] and RECORD['minutes']['training'] > 0


def test_rescoring_the_shipped_teacher_reproduces_its_recorded_validation_eer(cache):
    demo = prepare_demo(str(cache / 'demo'), **SMALL_WITH_VALIDATION)
    trials = read_trials(os.path.join(demo['path_trials'], VAL_LIST))
    assert len(trials.labels) == int(RECORD['validation']['list'].split('(')[1].split()[0])
    model = load_teacher(str(demo_teacher.SHIPPED), {})
    # a trial sits 1 / 864 of a class (0.12 points) away: a float difference of another CPU can move one
    assert demo_teacher.pooled_eer(model, demo['path_test'], trials) == pytest.approx(
        RECORD['validation']['pooled_eer'], abs=0.13
    )


@pytest.mark.parametrize('objective', ['ssl', 'speaker'])
def test_the_recipe_runs_end_to_end_at_a_tiny_size(cache, tmp_path, objective, monkeypatch):
    out = tmp_path / 'teacher'
    # the validation speakers (the only part of the corpus the recipe reads without its probes) are
    # those of the full corpus: their voices come from their own stream
    small = functools.partial(prepare_demo, **SMALL_WITH_VALIDATION)
    monkeypatch.setattr(demo_teacher, 'prepare_demo', small)
    extra = ['--steps', '2'] if objective == 'ssl' else ['--epochs', '1']
    demo_teacher.main_(
        ['--out', str(out), '--objective', objective, '--population', '4', '--no-probe', '--cache', str(cache)] + extra
    )
    record = json.loads((out / demo_teacher.RECORD).read_text())
    assert record['population']['num_speakers'] == 4 and record['population']['utterances'] == 4 * 2 * 4
    assert record['recipe']['objective'] == objective and record['recipe_hash'] != RECORD['recipe_hash']
    model = load_teacher(str(out), {})
    assert model.config.hidden_size == demo_teacher.SHAPE['hidden_size']
    # the record scores the very weights saved: re-scored in this process, the same EER to the digit
    demo = small(str(cache / 'demo'))
    trials = read_trials(os.path.join(demo['path_trials'], VAL_LIST))
    assert demo_teacher.pooled_eer(model, demo['path_test'], trials) == record['validation']['pooled_eer']
