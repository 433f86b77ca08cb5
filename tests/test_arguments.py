import pytest

from arguments import DEMO, EXPERIMENT_ARGS, ArgumentError, get_args


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
    with pytest.raises(ArgumentError, match=r"preset='vox3': expected auto or one of demo, smoke, vox2, vox1"):
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
