import pickle

import pytest

from arguments import CHOICES, DEMO, EXPERIMENT_ARGS, PRESETS, SYSTEM_ARGS, ArgumentError, Settings, get_args, parse


def test_defaults_are_the_papers_and_the_demo_preset_applies_without_dataset_paths():
    args, system_args, experiment_args = get_args([])
    assert args['demo'] is True
    assert args['epoch'] == DEMO['epoch'] and args['model_name_or_path'] == 'demo-teacher'
    assert experiment_args['batch_size'] == DEMO['batch_size']
    assert EXPERIMENT_ARGS['epoch'] == 100 and EXPERIMENT_ARGS['batch_size'] == 128
    assert set(system_args) | set(experiment_args) <= set(args)


def test_dataset_path_keeps_the_paper_values():
    args, _, _ = get_args(['path_train=/data/vox2'])
    assert args['demo'] is False
    assert args['epoch'] == 100 and args['model_name_or_path'] == 'facebook/wav2vec2-large-xlsr-53'


def test_overrides_are_typed_by_the_default():
    args, _, _ = get_args(['epoch=1', 'batch_size=4', 'lr=1e-3', 'class_weight=false', 'checkpoint=x.pt'])
    assert (args['epoch'], args['batch_size'], args['lr']) == (1, 4, 1e-3)
    assert args['class_weight'] is False and args['checkpoint'] == 'x.pt'


@pytest.mark.parametrize(
    'token, expected',
    [
        ('epochs=3', 'Did you mean epoch or kd_epochs?'),
        ('nonsense=1', "unknown argument 'nonsense'"),
        ('epoch=three', 'expected a value of type int'),
        ('class_weight=maybe', 'expected true or false'),
        ('epoch', 'key=value'),
    ],
)
def test_bad_overrides_fail_with_a_clear_message(token, expected):
    with pytest.raises(ArgumentError, match=expected):
        get_args([token])


def test_presets_choose_the_experiment_and_the_command_line_still_wins():
    from arguments import SMOKE

    assert get_args([])[0]['preset'] == 'demo' and get_args(['path_train=/d'])[0]['preset'] == 'vox2'
    smoke = get_args(['preset=smoke', 'path_train=/d', 'epoch=2'])[0]
    assert smoke['demo'] is False and smoke['model_name_or_path'] == 'tiny' and smoke['epoch'] == 2
    assert smoke['max_train_files'] == SMOKE['max_train_files'] > 0 and smoke['trials_vox1_e'] == 'off'
    vox1 = get_args(['preset=vox1', 'path_train=/d'])[0]
    assert vox1['epoch'] == 100 and vox1['name'] == 'oskdft-vox1' and vox1['demo'] is False
    with pytest.raises(
        ArgumentError, match=r"preset='vox3': expected one of auto, demo, smoke, vox2, vox1 \(did you mean vox2\?\)"
    ):
        get_args(['preset=vox3'])


def test_max_train_files_draws_a_seeded_subset_labelled_again(tmp_path):
    import numpy as np

    from data.voxceleb import Manifest, random_subset

    labels = np.repeat(np.arange(5), 4)
    manifest = Manifest(
        paths=[f'/t/id{label}/v/{i}.wav' for i, label in enumerate(labels)],
        labels=labels,
        speakers=[f'id{k}' for k in range(5)],
        lengths=np.arange(20),
        rates=np.full(20, 16000),
        channels=np.ones(20, int),
        notes=[],
    )
    sub = random_subset(manifest, 6, seed=1)
    assert len(sub.paths) == 6 and sub.paths == sorted(sub.paths, key=manifest.paths.index)
    assert sub.paths == random_subset(manifest, 6, seed=1).paths != random_subset(manifest, 6, seed=2).paths
    for path, label in zip(sub.paths, sub.labels):  # each file keeps its own speaker
        assert sub.speakers[label] == path.split('/')[2]
    assert sub.labels.max() == len(sub.speakers) - 1 and sub.speakers == sorted(sub.speakers)


def test_the_settings_cannot_change_once_resolved_and_a_changed_copy_is_a_new_object():
    settings = Settings(parse(['epoch=3'])[0])
    for change in (
        lambda: settings.__setitem__('epoch', 4),
        lambda: settings.update(epoch=4),
        lambda: settings.pop('epoch'),
        lambda: settings.setdefault('new', 1),
        lambda: settings.__delitem__('epoch'),
    ):
        with pytest.raises(TypeError, match='read-only'):
            change()
    changed = settings.replace(epoch=4)
    assert settings['epoch'] == 3 and changed['epoch'] == 4 and isinstance(changed, Settings)
    copied = pickle.loads(pickle.dumps(settings))  # as a spawned process receives them
    assert copied == settings and isinstance(copied, Settings)
    with pytest.raises(TypeError):
        copied['epoch'] = 5


def test_the_choices_table_is_what_the_code_accepts():
    """A method, mode, best-model list or precision added to the code but not to CHOICES (or the other
    way round) would be refused at the command line, or reach code with no branch for it."""
    import main
    from trainer.methods import METHODS
    from trainer.parts import AMP_DTYPES
    from trainer.train import BEST_MODELS

    assert set(CHOICES['method']) == set(METHODS)
    assert set(CHOICES['mode']) == {'train', *main.CHECKPOINT_MODES}
    assert set(CHOICES['best_model']) == set(BEST_MODELS)
    assert set(CHOICES['amp']) == {'auto', *AMP_DTYPES}
    assert set(CHOICES['preset']) == {'auto', *PRESETS}
    defaults = {**SYSTEM_ARGS, **EXPERIMENT_ARGS}
    assert all(defaults[key] in allowed for key, allowed in CHOICES.items())


@pytest.mark.parametrize(
    'token, message',
    [
        (
            'method=oskdf',
            "method='oskdf': expected one of oskdft, ft, student_ft, kd_ft, frozen (did you mean oskdft?)",
        ),
        ('mode=evaluation', "mode='evaluation': expected one of train, evaluate, export, embed, verify"),
        ('device=gpu', "device='gpu': expected one of auto, cuda, cpu"),
    ],
)
def test_a_value_outside_its_choices_fails_when_the_command_line_is_read(token, message):
    with pytest.raises(ArgumentError) as error:
        parse([token])
    assert str(error.value).startswith(message)


def test_prepare_makes_the_derived_values_once_without_changing_what_it_was_given(corpus):
    import main

    args = parse([f'{key}={value}' for key, value in corpus.items()] + ['model_name_or_path=demo-teacher'])[0]
    given = dict(args)
    settings, notes = main.prepare(args)
    assert args == given  # nothing changed in place
    assert isinstance(settings, Settings) and settings['model_name_or_path'].endswith('demo-teacher')
    assert settings['path_train'] == corpus['path_train'] and len(notes) == 1


def test_help_prints_every_setting_with_its_default_presets_choices_and_help(capsys):
    """`python main.py help`: a key left out of the text, a preset's value or a setting's choices not
    shown, or a setting without its line of help would leave a user reading arguments.py instead."""
    import main
    from arguments import EXPERIMENT, SYSTEM

    main.main(['help'])
    text = capsys.readouterr().out
    table = {**SYSTEM, **EXPERIMENT}
    heads = [line for line in text.splitlines() if not line.startswith(' ')]
    assert [line.split(' = ')[0] for line in heads] == list(table)
    assert all(len(setting.help) >= 10 for setting in table.values()), [k for k, s in table.items() if len(s.help) < 10]
    assert 'lr = 0.0001   (presets: demo 0.002, smoke 0.002)' in heads
    assert "amp = 'auto'" in heads
    assert '    one of: auto, none, bf16, fp16' in text.splitlines()
    main.main(['help', 'epoch'])
    assert capsys.readouterr().out == (
        'epoch = 100   (presets: demo 5, smoke 1)\n    training epochs (kd_ft: of its fine-tuning stage)\n'
    )
    with pytest.raises(ArgumentError, match='help epochs: no such setting'):
        main.main(['help', 'epochs'])
