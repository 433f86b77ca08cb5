import json
import os

import numpy as np
import pytest
import torch
from matplotlib.image import imread

import log.local
from log.controller import LogModuleController

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def build(path_log, rank=0, source_root=None, name='run'):
    builder = LogModuleController.Builder(name, 'proj').tags(['oskdft', 'test']).description('a test run')
    if source_root:
        builder.save_source_files(source_root)
    return builder.use_local(str(path_log)).build(rank=rank)


def read_lines(path):
    with open(path) as file:
        return file.read().splitlines()


def files_under(folder):
    """{relative path: bytes} of every file under folder."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(root, name), 'rb') as file:
                found[os.path.relpath(os.path.join(root, name), folder)] = file.read()
    return found


def assert_valid_png(path):
    with open(path, 'rb') as file:
        assert file.read(8) == PNG_SIGNATURE
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_run_folder_layout_and_metrics_jsonl(tmp_path, capsys):
    logger = build(tmp_path)
    parent, folder = os.path.split(logger.run_dir)
    assert parent == str(tmp_path / 'proj') and folder.startswith('run-') and len(folder) == len('run-20240101-120000')
    assert f'run folder: {logger.run_dir}' in capsys.readouterr().out
    logger.log_metric('loss/kd', 2.5, 1)
    logger.log_metric('loss/sv', np.float32(7.25), 1)
    logger.log_metric('lr/ecapa', torch.tensor(1e-4), 2)
    logger.log_metric('eval/Vox1-O/eer', 12.5, 2)
    lines = [json.loads(line) for line in read_lines(os.path.join(logger.run_dir, 'metrics.jsonl'))]
    assert [(d['name'], d['value'], d['step']) for d in lines] == [
        ('loss/kd', 2.5, 1),
        ('loss/sv', 7.25, 1),
        ('lr/ecapa', pytest.approx(1e-4), 2),
        ('eval/Vox1-O/eer', 12.5, 2),
    ]
    assert all(set(d) == {'name', 'value', 'step', 'time'} and d['time'] > 1.6e9 for d in lines)
    with open(os.path.join(logger.run_dir, 'run.json')) as file:
        assert json.load(file)['tags'] == ['oskdft', 'test']
    logger.finish()
    assert capsys.readouterr().out.strip().endswith(logger.run_dir)


def test_parameters_json_redacts_secrets_and_keeps_the_rest(tmp_path):
    logger = build(tmp_path)
    logger.log_parameter(
        {
            'lr': 1e-4,
            'epoch': 100,
            'path_log': './exp',
            'tags': 'a,b',
            'checkpoint': None,
            'neptune_api_token': 'abc123',
            'WANDB_API-KEY': 'xyz',
            'db_password': 7,
            'tiny_ssl': {'hidden_size': 128, 'client_secret': 's3'},
        }
    )
    with open(os.path.join(logger.run_dir, 'parameters.json')) as file:
        saved = json.load(file)
    assert saved == {
        'lr': 1e-4,
        'epoch': 100,
        'path_log': './exp',
        'tags': 'a,b',
        'checkpoint': None,
        'neptune_api_token': 'REDACTED',
        'WANDB_API-KEY': 'REDACTED',
        'db_password': 'REDACTED',
        'tiny_ssl': {'hidden_size': 128, 'client_secret': 'REDACTED'},
    }


def test_source_copy_redacts_planted_tokens_and_skips_what_is_not_source(tmp_path):
    root = tmp_path / 'project'
    (root / 'log').mkdir(parents=True)
    arguments = (
        'SYSTEM_ARGS = {\n'
        "    'neptune_api_token': 'tok-123-secret',\n"
        '    "wandb_api_key": "key-456",\n'
        "    'path_log': './exp',\n"
        "    'token_count': 5,\n"
        '}\n'
        "api_key = 'key-789'\n"
        'PASSWORD: str = "pw-000"\n'
    )
    (root / 'arguments.py').write_text(arguments)
    (root / 'log' / 'local.py').write_text('x = 1\n')
    (root / 'README.md').write_text('# readme\n')
    (root / 'requirements.txt').write_text('torch\n')
    (root / 'notes.txt').write_text('not source\n')
    for skipped in ('.venv/lib', '__pycache__', '.git', 'exp/old-run', 'env'):
        (root / skipped).mkdir(parents=True)
        (root / skipped / 'skipped.py').write_text('y = 2\n')
    (root / 'env' / 'pyvenv.cfg').write_text('home = /usr\n')
    (root / 'data_dump' / 'nested').mkdir(parents=True)  # no Python file of its own: not walked
    (root / 'data_dump' / 'nested' / 'deep.py').write_text('z = 3\n')

    logger = build(root / 'exp', source_root=root)
    copied = files_under(os.path.join(logger.run_dir, 'source'))
    assert sorted(copied) == ['README.md', 'arguments.py', os.path.join('log', 'local.py'), 'requirements.txt']
    text = copied['arguments.py'].decode()
    for secret in ('tok-123-secret', 'key-456', 'key-789', 'pw-000'):
        assert secret not in text
    assert text == (
        'SYSTEM_ARGS = {\n'
        "    'neptune_api_token': 'REDACTED',\n"
        '    "wandb_api_key": \'REDACTED\',\n'
        "    'path_log': './exp',\n"
        "    'token_count': 5,\n"
        '}\n'
        "api_key = 'REDACTED'\n"
        "PASSWORD: str = 'REDACTED'\n"
    )
    assert copied[os.path.join('log', 'local.py')] == b'x = 1\n'


def test_a_token_typed_into_the_settings_table_is_redacted_in_the_source_copy(tmp_path):
    """arguments.py as it is, with tokens typed in as a user would: the copy holds neither token and is
    otherwise the same file."""
    root = tmp_path / 'project'
    root.mkdir()
    real = open(os.path.join(os.path.dirname(__file__), '..', '..', 'arguments.py')).read()
    typed = real.replace("'wandb_token': Setting(None,", "'wandb_token': Setting('wandb-secret-0123456789',")
    typed = typed.replace("'neptune_token': Setting(None,", '\'neptune_token\': Setting("nep-secret-9876543210",')
    assert typed.count('secret-') == 2
    (root / 'arguments.py').write_text(typed)
    logger = build(root / 'exp', source_root=root)
    copied = files_under(os.path.join(logger.run_dir, 'source'))['arguments.py'].decode()
    assert 'secret-' not in copied
    expected = real.replace("'wandb_token': Setting(None,", "'wandb_token': Setting('REDACTED',")
    expected = expected.replace("'neptune_token': Setting(None,", "'neptune_token': Setting('REDACTED',")
    assert copied == expected


def test_same_name_in_the_same_second_gets_a_new_folder_and_leaves_the_first_untouched(tmp_path, monkeypatch):
    monkeypatch.setattr(log.local.time, 'strftime', lambda fmt, *args: '20240101-120000')
    first = build(tmp_path)
    first.log_metric('loss/kd', 1.0, 1)
    first.log_text('first run')
    first.save_results({'best_epoch': 1})
    first.finish()
    before = files_under(first.run_dir)
    second = build(tmp_path)
    third = build(tmp_path)
    second.log_metric('loss/kd', 9.0, 1)
    second.save_results({'best_epoch': 2})
    second.finish()
    third.finish()
    assert first.run_dir.endswith('run-20240101-120000')
    assert second.run_dir == first.run_dir + '-2' and third.run_dir == first.run_dir + '-3'
    assert files_under(first.run_dir) == before


def test_results_scores_text_and_plots(tmp_path, capsys):
    logger = build(tmp_path)
    results = {
        'Vox1-O': {'eer': np.float64(12.5), 'min_dcf_0.05': 0.5, 'min_dcf_0.01': 0.75, 'trials': 4},
        'best_epoch': 2,
        'params': {'teacher': 10, 'student': 5, 'backend': 3},
    }
    logger.save_results(results)
    with open(os.path.join(logger.run_dir, 'results.json')) as file:
        assert json.load(file) == results

    logger.save_scores(
        'Vox1-O',
        ['a/1.wav', 'b/1.wav', 'a/1.wav', 'c/1.wav'],
        ['a/2.wav', 'c/2.wav', 'b/2.wav', 'c/3.wav'],
        np.array([1, 0, 0, 1]),
        np.array([0.75, 0.125, -0.5, 0.25]),
    )
    assert read_lines(os.path.join(logger.run_dir, 'scores', 'Vox1-O.txt')) == [
        '1 a/1.wav a/2.wav 0.75000000',
        '0 b/1.wav c/2.wav 0.12500000',
        '0 a/1.wav b/2.wav -0.50000000',
        '1 c/1.wav c/3.wav 0.25000000',
    ]
    labels, enroll, test, scores = log.local.read_scores(os.path.join(logger.run_dir, 'scores', 'Vox1-O.txt'))
    assert labels.tolist() == [1, 0, 0, 1] and scores.tolist() == [0.75, 0.125, -0.5, 0.25]
    assert enroll == ['a/1.wav', 'b/1.wav', 'a/1.wav', 'c/1.wav']
    assert test == ['a/2.wav', 'c/2.wav', 'b/2.wav', 'c/3.wav']

    logger.log_text('epoch 1 done')
    assert capsys.readouterr().out.endswith('epoch 1 done\n')
    (line,) = read_lines(os.path.join(logger.run_dir, 'log.txt'))
    assert line.endswith(' epoch 1 done') and line[:4].isdigit() and line[4] == '-'

    for epoch in (1, 2):
        for name in ('kd', 'sv', 'total'):
            logger.log_metric(f'loss/{name}', 1.0 / epoch, epoch)
        logger.log_metric('lr/backend', 1e-4 / epoch, epoch)
        logger.log_metric('eval/Vox1-O/eer', 30.0 / epoch, epoch)
        logger.log_metric('eval/Vox1-O/min_dcf_0.05', 0.9, epoch)
        logger.end_epoch()
    logger.finish()
    plots = os.path.join(logger.run_dir, 'plots')
    assert sorted(os.listdir(plots)) == ['det_Vox1-O.png', 'eer.png', 'loss.png', 'lr.png', 'scores_Vox1-O.png']
    for name in os.listdir(plots):
        assert_valid_png(os.path.join(plots, name))


def test_rank_other_than_zero_writes_nothing(tmp_path, capsys):
    logger = build(tmp_path / 'logs', rank=1, source_root=os.path.dirname(__file__))
    assert logger.run_dir == ''
    logger.log_parameter({'lr': 1.0, 'api_token': 'x'})
    logger.log_metric('loss/kd', 1.0, 1)
    logger.log_text('hello')
    logger.save_scores('Vox1-O', ['a'], ['b'], [1], [0.5])
    logger.save_results({'best_epoch': 1})
    logger.finish()
    assert os.listdir(tmp_path) == []
    assert capsys.readouterr().out == ''


def test_run_folders_are_this_names_own_and_resume_auto_never_takes_another_runs_last_checkpoint(tmp_path):
    """'oskdft-*' also matches the folders of a run named 'oskdft-vox2': resume=auto must not continue
    that run's last.pt (nor a folder someone made by hand)."""
    import main
    from log.local import run_folders

    parent = tmp_path / 'OS-KDFT'
    for folder in ('oskdft-20261204-120000', 'oskdft-20261204-120000-2', 'oskdft-vox2-20261204-130000', 'oskdft-old'):
        (parent / folder).mkdir(parents=True)
    (parent / 'oskdft-vox2-20261204-130000' / 'last.pt').write_bytes(b'x')
    (parent / 'oskdft-old' / 'last.pt').write_bytes(b'x')
    assert run_folders(str(tmp_path), 'OS-KDFT', 'oskdft') == [
        str(parent / 'oskdft-20261204-120000'),
        str(parent / 'oskdft-20261204-120000-2'),
    ]
    args = {'path_log': str(tmp_path), 'project': 'OS-KDFT', 'name': 'oskdft'}
    assert main.find_last_checkpoint(args) is None
    (parent / 'oskdft-20261204-120000-2' / 'last.pt').write_bytes(b'x')
    assert main.find_last_checkpoint(args) == str(parent / 'oskdft-20261204-120000-2' / 'last.pt')
    made = build(tmp_path, name='oskdft').run_dir
    assert made in run_folders(str(tmp_path), 'proj', 'oskdft')
