import pytest

from arguments import DEMO, EXPERIMENT_ARGS, ArgumentError, get_args


def test_defaults_are_the_papers_and_the_demo_preset_applies_without_dataset_paths():
    args, system_args, experiment_args = get_args([])
    assert args['demo'] is True
    assert args['epoch'] == DEMO['epoch'] and args['model_name_or_path'] == 'tiny'
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


@pytest.mark.parametrize('token, expected', [
    ('epochs=3', "Did you mean epoch?"),
    ('nonsense=1', "unknown argument 'nonsense'"),
    ('epoch=three', 'expected a value of type int'),
    ('class_weight=maybe', 'expected true or false'),
    ('epoch', 'key=value'),
])
def test_bad_overrides_fail_with_a_clear_message(token, expected):
    with pytest.raises(ArgumentError, match=expected):
        get_args([token])
