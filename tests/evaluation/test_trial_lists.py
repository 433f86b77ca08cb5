"""Which trial-list file each VoxCeleb1 test is read from."""

from types import SimpleNamespace

import pytest

from arguments import EXPERIMENT_ARGS, SYSTEM_ARGS
from evaluation.trials import load_trial_lists


class Texts:
    def __init__(self):
        self.lines = []

    def log_text(self, text):
        self.lines.append(text)


def make_lists(tmp_path, files):
    """Trial files with 2 trials each (over 3 test files that path_test holds)."""
    trials, test = tmp_path / 'trials', tmp_path / 'test'
    for key in ('id1/a/1.wav', 'id1/b/2.wav', 'id2/c/3.wav'):
        (test / key).parent.mkdir(parents=True, exist_ok=True)
        (test / key).write_bytes(b'')
    trials.mkdir()
    for number, file in enumerate(files):
        (trials / file).write_text('1 id1/a/1.wav id1/b/2.wav\n0 id1/a/1.wav id2/c/3.wav\n' * (number + 1))
    return dict({**SYSTEM_ARGS, **EXPERIMENT_ARGS}, path_trials=str(trials), path_test=str(test))


def test_the_cleaned_list_comes_first_then_the_original_name(tmp_path):
    args = make_lists(tmp_path, ['veri_test.txt', 'veri_test2.txt', 'list_test_all.txt'])
    texts = Texts()
    lists = load_trial_lists(args, texts)
    assert set(lists) == {'Vox1-O', 'Vox1-E'}
    assert len(lists['Vox1-O'].labels) == 4 and len(lists['Vox1-E'].labels) == 6  # veri_test2 has 4 lines
    assert 'Vox1-O: 4 trials from veri_test2.txt' in texts.lines
    assert 'Vox1-E: 6 trials from list_test_all.txt' in texts.lines
    assert (
        f'Vox1-H: no list_test_hard2.txt or list_test_hard.txt in path_trials={args["path_trials"]!r} '
        f'(trials_vox1_h), left out'
    ) in texts.lines


def test_a_user_who_has_only_veri_test_txt_gets_vox1_o(tmp_path):
    lists = load_trial_lists(make_lists(tmp_path, ['veri_test.txt']), Texts())
    assert list(lists) == ['Vox1-O'] and len(lists['Vox1-O'].labels) == 2


@pytest.mark.parametrize('given, trials', [('veri_test.txt', 2), ('my_list.txt', 6)])
def test_an_explicit_file_name_wins(tmp_path, given, trials):
    args = make_lists(tmp_path, ['veri_test.txt', 'veri_test2.txt', 'my_list.txt'])
    lists = load_trial_lists(dict(args, trials_vox1_o=given), Texts())
    assert len(lists['Vox1-O'].labels) == trials


def test_training_on_voxceleb1_dev_leaves_e_and_h_out(tmp_path):
    """Their trials are between VoxCeleb1 dev speakers: scoring them would test on training speakers."""
    args = make_lists(tmp_path, ['veri_test2.txt', 'list_test_all2.txt', 'list_test_hard2.txt'])
    texts = Texts()
    vox1_dev = SimpleNamespace(speakers=['id10001', 'id10002', 'id11251'])
    assert list(load_trial_lists(args, texts, vox1_dev)) == ['Vox1-O']
    for name in ('Vox1-E', 'Vox1-H'):
        assert f'{name}: left out, path_train is VoxCeleb1 dev, whose speakers its trials use' in texts.lines
    vox2_dev = SimpleNamespace(speakers=['id00012', 'id09272'])
    assert list(load_trial_lists(args, Texts(), vox2_dev)) == ['Vox1-O', 'Vox1-E', 'Vox1-H']
