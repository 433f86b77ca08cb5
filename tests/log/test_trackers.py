"""The controller and its trackers without training: a tracker that fails is switched off with one
warning, secrets never reach any text or file, and a resumed run goes on in the same tracked run."""

import glob
import json
import os
import re
import subprocess
import sys

import pytest

from log.backend import LogBackend
from log.controller import LogModuleController
from log.source import copy_source_files
from tests.log.test_local import read_lines
from utils.redact import redact_source, secret_values, without_secrets

WARNING_END = 'it is switched off for this run, training and the local record go on'


class Recorder(LogBackend):
    """A tracker that keeps every call; fail_on: the call number (1-based) of log_metric that raises."""

    name = 'recorder'

    def __init__(self, run, fail_on=None):
        self.run = run
        self.fail_on = fail_on
        self.metrics, self.texts, self.parameters, self.files = [], [], [], []
        self.finished = None

    def log_parameter(self, params):
        self.parameters.append(params)

    def log_metric(self, name, value, step, at=None):
        self.metrics.append((name, value, step))
        if len(self.metrics) == self.fail_on:
            raise ConnectionError('\x1b[91m\n----\nnetwork is unreachable\x1b[0m\nretried 5 times')

    def log_text(self, text):
        self.texts.append(text)

    def save_file(self, path, name):
        self.files.append(name)

    def finish(self, failed=False):
        self.finished = 'failed' if failed else 'done'


def started(recorder):
    """The maker the Builder calls: hands over the recorder with the run it is given."""

    def make(run):
        recorder.run = run
        return recorder

    return make


def refuse_to_start(run):
    raise ValueError('the service no longer takes this account')


def test_a_tracker_that_fails_to_start_or_to_send_is_warned_about_once_and_switched_off(tmp_path, capsys):
    flaky, steady = Recorder(None, fail_on=2), Recorder(None)
    flaky.name = 'flaky'
    logger = (
        LogModuleController.Builder('run', 'proj')
        .use_local(str(tmp_path))
        .use_backend('broken', refuse_to_start)
        .use_backend('flaky', started(flaky))
        .use_backend('steady', started(steady))
        .build()
    )
    for epoch in (1, 2, 3):
        logger.log_metric('loss/kd', float(epoch), epoch)
    logger.log_text('epoch 3 done')
    logger.finish()
    assert flaky.metrics == [('loss/kd', 1.0, 1), ('loss/kd', 2.0, 2)] and flaky.finished == 'failed'
    assert flaky.texts == []  # nothing sent after its failure
    assert steady.metrics == [('loss/kd', 1.0, 1), ('loss/kd', 2.0, 2), ('loss/kd', 3.0, 3)]
    assert steady.finished == 'done' and steady.files == ['log.txt']
    metrics = [json.loads(line) for line in read_lines(os.path.join(logger.run_dir, 'metrics.jsonl'))]
    assert [(m['name'], m['step']) for m in metrics] == [('loss/kd', 1), ('loss/kd', 2), ('loss/kd', 3)]
    warnings = [
        line.split(' ', 2)[2] for line in read_lines(os.path.join(logger.run_dir, 'log.txt')) if 'warning' in line
    ]
    assert warnings == [
        f'warning: broken could not start (ValueError: the service no longer takes this account); {WARNING_END}',
        f'warning: flaky failed in log_metric (ConnectionError: network is unreachable); {WARNING_END}',
    ]
    out = capsys.readouterr().out
    assert out.count('warning: flaky') == 1 and out.count('warning: broken') == 1


def test_the_local_records_errors_are_the_runs_errors(tmp_path):
    logger = LogModuleController.Builder('run', 'proj').use_local(str(tmp_path)).build()
    logger.finish()  # its files are closed: writing fails
    with pytest.raises(ValueError, match='closed file'):
        logger.log_metric('loss/kd', 1.0, 1)


def test_tokens_and_secret_environment_values_never_reach_text_parameters_or_run_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('WANDB_API_KEY', 'env-wandb-key-0123456789')
    monkeypatch.setenv('HF_TOKEN', 'hf_env_token_abcdef')
    monkeypatch.setenv('DB_PASSWORD', 'short')  # under 8 characters: not a token, left alone
    token = 'given-neptune-token-xyz'
    recorder = Recorder(None)
    logger = (
        LogModuleController.Builder('run', 'proj')
        .description('trained with env-wandb-key-0123456789')
        .tags(['a', 'hf_env_token_abcdef'])
        .use_local(str(tmp_path))
        .use_backend('recorder', started(recorder), tokens=[token, None])
        .build()
    )
    logger.log_parameter(
        {
            'neptune_token': token,
            'note': f'x {token} y',
            'paths': ['/a', 'hf_env_token_abcdef'],
            'nested': {'url': 'https://u:env-wandb-key-0123456789@host'},
            'lr': 0.1,
        }
    )
    logger.log_text(f'login with {token} failed; password short')
    logger.finish()
    expected = {
        'neptune_token': 'REDACTED',
        'note': 'x REDACTED y',
        'paths': ['/a', 'REDACTED'],
        'nested': {'url': 'https://u:REDACTED@host'},
        'lr': 0.1,
    }
    with open(os.path.join(logger.run_dir, 'parameters.json')) as file:
        assert json.load(file) == expected
    assert recorder.parameters == [expected]
    assert recorder.texts == ['login with REDACTED failed; password short']
    assert capsys.readouterr().out.splitlines()[1] == 'login with REDACTED failed; password short'
    assert read_lines(os.path.join(logger.run_dir, 'log.txt'))[0].endswith(
        ' login with REDACTED failed; password short'
    )
    with open(os.path.join(logger.run_dir, 'run.json')) as file:
        run = json.load(file)
    assert run['description'] == 'trained with REDACTED' and run['tags'] == ['a', 'REDACTED']
    assert recorder.run.description == 'trained with REDACTED'


def test_secret_values_longest_first_so_a_token_holding_another_is_replaced_whole():
    environ = {'NEPTUNE_API_TOKEN': 'abcdefgh', 'PATH': '/usr/bin:/bin', 'MY_SECRET': 'abc'}
    assert secret_values(['abcdefgh-ijkl', None, ''], environ) == ('abcdefgh-ijkl', 'abcdefgh')
    assert (
        redact_source('run(key="abcdefgh-ijkl")  # abcdefgh\n', ('abcdefgh-ijkl', 'abcdefgh'))
        == 'run(key="REDACTED")  # REDACTED\n'
    )
    assert without_secrets({'wandb_token': 'x', 'neptune_api_token': None, 'lr': 1}) == {'lr': 1}


def test_the_source_copy_redacts_a_secret_value_wherever_it_stands(tmp_path):
    root = tmp_path / 'project'
    root.mkdir()
    (root / 'train.py').write_text("import wandb\nwandb.login(key='tok-abcdef-123456')  # tok-abcdef-123456\n")
    copy_source_files(str(root), str(tmp_path / 'copy'), secrets=('tok-abcdef-123456',))
    assert (tmp_path / 'copy' / 'train.py').read_text() == "import wandb\nwandb.login(key='REDACTED')  # REDACTED\n"


def wandb_records(run_folder):
    """The records of a wandb run's .wandb file, as wandb's own reader prints them."""
    done = subprocess.run(
        [sys.executable, '-m', 'wandb', 'leet', 'inspect', '--json', run_folder],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_a_resumed_run_goes_on_in_the_same_wandb_run(tmp_path, monkeypatch):
    monkeypatch.setenv('WANDB_DIR', str(tmp_path / 'wandb'))
    monkeypatch.setenv('WANDB_MODE', 'offline')
    (tmp_path / 'wandb').mkdir()
    first = LogModuleController.Builder('run', 'proj').use_local(str(tmp_path / 'exp')).use_wandb('me').build()
    first.log_metric('loss/kd', 2.0, 1)
    first.finish()
    again = (
        LogModuleController.Builder('run', 'proj')
        .use_local(str(tmp_path / 'exp'), run_dir=first.run_dir)
        .use_wandb('me')
        .build()
    )
    again.log_metric('loss/kd', 1.0, 2)
    again.finish()
    with open(os.path.join(first.run_dir, 'trackers.json')) as file:
        run_id = json.load(file)['wandb']
    folders = sorted(glob.glob(str(tmp_path / 'wandb' / 'wandb' / 'offline-run-*')))
    # wandb names a run's folders offline-run-<second>-<id>, with -1 after a second start in the same second
    assert len(folders) == 2 and all(re.search(rf'-{run_id}(-\d+)?$', folder) for folder in folders)
    histories = []
    for folder in folders:
        records = wandb_records(folder)
        (run,) = [record['run'] for record in records if record['type'] == 'run']
        assert run['run_id'] == run_id and run['display_name'] == os.path.basename(first.run_dir)
        histories += [record['history']['item'] for record in records if record['type'] == 'history']
    assert [(item['epoch'], item['loss/kd']) for item in histories] == [(1, 2.0), (2, 1.0)]
