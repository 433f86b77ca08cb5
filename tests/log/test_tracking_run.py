"""A tiny demo run with every tracker on and offline: TensorBoard, wandb and neptune each hold the
metrics of metrics.jsonl (same names, steps and values), the parameters, tags, description and files,
read back with each tool's own reader; fake tokens given on the command line and in the environment
appear in no file and no output. And a run whose trackers fail trains to the end."""

import glob
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import main
from log.wandb_backend import WandbBackend
from tests.conftest import FAST, ROOT
from tests.log.test_local import assert_valid_png
from tests.log.test_trackers import wandb_records

TOKENS = {'wandb_token': 'fake-wandb-argument-7f3a9c1e5b', 'neptune_token': 'fake-neptune-argument-2d8e4f6a0c'}
ENV_TOKENS = {
    'WANDB_API_KEY': 'fake-wandb-environment-9b1d3f5h7j',
    'NEPTUNE_API_TOKEN': 'fake-neptune-environment-4k6m8p0r2t',
}
RUN = [
    *FAST,
    'epoch=2',
    'log_interval=2',
    'trials_vox1_e=off',
    'trials_vox1_h=off',
    'name=tracked',
    'wandb_user=me',
    'neptune_user=me',
    'log_checkpoints=true',
]
STEPS = [2, 4, 6, 8, 10, 12]  # log_interval 2 of 6 steps an epoch (24 utterances, batch 4), 2 epochs
FILES = {
    'plots/loss.png',
    'plots/lr.png',
    'plots/eer.png',
    'plots/det_Vox1-O.png',
    'plots/scores_Vox1-O.png',
    'results.md',
    'log.txt',
}


@pytest.fixture(scope='module')
def tracked(corpus, tmp_path_factory):
    """The run, in its own process (all it prints is captured), wandb and neptune offline into
    folders of their own, HOME a new folder (whatever a library writes there is searched too)."""
    root = tmp_path_factory.mktemp('tracked')
    for folder in ('wandb', 'neptune', 'home'):
        (root / folder).mkdir()
    env = dict(
        os.environ,
        **ENV_TOKENS,
        WANDB_MODE='offline',
        NEPTUNE_MODE='offline',
        WANDB_DIR=str(root / 'wandb'),
        NEPTUNE_DATA_DIRECTORY=str(root / 'neptune'),
        HOME=str(root / 'home'),
        MPLCONFIGDIR=matplotlib.get_configdir(),
    )
    command = [
        sys.executable,
        'main.py',
        *(f'{key}={value}' for key, value in corpus.items()),
        *RUN,
        *(f'{key}={value}' for key, value in TOKENS.items()),
        f'path_log={root / "exp"}',
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    (folder,) = (root / 'exp' / 'OS-KDFT').iterdir()
    (wandb_run,) = glob.glob(str(root / 'wandb' / 'wandb' / 'offline-run-*'))
    (neptune_log,) = glob.glob(str(root / 'neptune' / 'offline' / '*' / 'data-1.log'))
    with open(neptune_log) as file:
        operations = [json.loads(line)['obj'] for line in file]
    return SimpleNamespace(
        root=root,
        folder=folder,
        output=done.stdout + done.stderr,
        wandb=wandb_records(wandb_run),
        neptune=operations,
        results=json.loads((folder / 'results.json').read_text()),
        metrics=[json.loads(line) for line in (folder / 'metrics.jsonl').read_text().splitlines()],
    )


def points(metrics):
    return sorted((m['name'], m['step'], m['value']) for m in metrics)


def series(metrics, name):
    return {m['step']: m['value'] for m in metrics if m['name'] == name}


def test_the_run_logs_losses_per_interval_at_the_global_step_and_the_final_scores_apart(tracked):
    metrics, results = tracked.metrics, tracked.results
    for name in ('kd', 'sv', 'total', 'accuracy'):
        assert sorted(series(metrics, f'train/{name}')) == STEPS
    for name in ('kd', 'sv', 'total'):  # the running mean at an epoch's last step is its mean
        for epoch in (1, 2):
            assert series(metrics, f'train/{name}')[6 * epoch] == pytest.approx(series(metrics, f'loss/{name}')[epoch])
    assert series(metrics, 'train/skipped_steps') == {6: 0.0, 12: 0.0}
    assert series(metrics, 'lr/adapter')[1] == pytest.approx(1e-3)  # 10 x the ECAPA LR (1e-4) of epoch 1
    assert sorted(series(metrics, 'eval/Vox1-O/eer')) == [1, 2]
    best = results['best_epoch']
    for metric in ('eer', 'min_dcf_0.05', 'min_dcf_0.01'):
        assert series(metrics, f'final/Vox1-O/{metric}') == {best: results['Vox1-O'][metric]}
        assert series(metrics, f'eval/Vox1-O/{metric}')[best] == results['Vox1-O'][metric]


def test_wandb_holds_every_metric_under_its_name_and_step(tracked):
    logged = []
    for record in tracked.wandb:
        if record['type'] == 'history':
            item = record['history']['item']
            (name,) = [key for key in item if not key.startswith('_') and key not in ('epoch', 'global_step')]
            (axis,) = [key for key in ('epoch', 'global_step') if key in item]
            assert axis == ('global_step' if name.startswith(('train/', 'perf/', 'health/')) else 'epoch')
            logged.append({'name': name, 'step': item[axis], 'value': item[name]})
    assert points(logged) == points(tracked.metrics)


def test_neptune_holds_every_metric_under_its_name_and_step(tracked):
    logged = [
        {'name': '/'.join(operation['path']), 'step': value['step'], 'value': value['value']}
        for operation in tracked.neptune
        if operation['type'] == 'LogFloats' and operation['path'][0] != 'monitoring'
        for value in operation['values']
    ]
    assert points(logged) == points(tracked.metrics)


def test_tensorboard_holds_every_metric_under_its_name_and_step(tracked):
    events = EventAccumulator(str(tracked.folder / 'tensorboard'))
    events.Reload()
    logged = [
        {'name': tag, 'step': event.step, 'value': event.value}
        for tag in events.Tags()['scalars']
        for event in events.Scalars(tag)
    ]
    stored = [dict(m, value=float(np.float32(m['value']))) for m in tracked.metrics]  # event files hold float32
    assert points(logged) == points(stored)
    (text,) = events.Tensors('parameters/text_summary')
    table = text.tensor_proto.string_val[0].decode()
    assert '| lr | `0.0001` |' in table and '| wandb_token | `"REDACTED"` |' in table


def test_parameters_tags_description_and_files_reach_wandb(tracked):
    parameters = json.loads((tracked.folder / 'parameters.json').read_text())
    (run,) = [record['run'] for record in tracked.wandb if record['type'] == 'run']
    assert run['display_name'] == tracked.folder.name and run['tags'] == ['oskdft', 'vox2']
    assert run['notes'] == parameters['description'] and run['entity'] == 'me' and run['project'] == 'OS-KDFT'
    (config,) = [record['config']['update'] for record in tracked.wandb if record['type'] == 'config']
    assert config['lr'] == parameters['lr'] == 1e-4 and config['wandb_token'] == config['neptune_token'] == 'REDACTED'
    files = {file['path'] for record in tracked.wandb if record['type'] == 'files' for file in record['files']['files']}
    assert files >= FILES
    (artifact,) = [record['artifact'] for record in tracked.wandb if record['type'] == 'artifact']
    (content,) = artifact['manifest']['contents']
    assert content['path'] == 'best.pt' and int(content['size']) == (tracked.folder / 'best.pt').stat().st_size
    (exit_record,) = [record['exit'] for record in tracked.wandb if record['type'] == 'exit']
    assert exit_record.get('exit_code', 0) == 0


def test_parameters_tags_description_and_files_reach_neptune(tracked):
    assigned = {'/'.join(op['path']): op.get('value') for op in tracked.neptune if op['type'].startswith('Assign')}
    assert assigned['sys/name'] == tracked.folder.name and assigned['sys/failed'] is False
    assert assigned['sys/description'] == 'One-step knowledge distillation and fine-tuning for speaker verification'
    assert assigned['parameters/lr'] == 1e-4 and assigned['parameters/neptune_token'] == 'REDACTED'
    assert assigned['parameters/wandb_token'] == 'REDACTED' and assigned['parameters/checkpoint'] == 'None'
    (tags,) = [op['values'] for op in tracked.neptune if op['type'] == 'AddStrings' and op['path'] == ['sys', 'tags']]
    assert sorted(tags) == ['oskdft', 'vox2']  # a set at neptune
    uploads = {'/'.join(op['path']): op['file_path'] for op in tracked.neptune if op['type'] == 'UploadFile'}
    assert set(uploads) == FILES | {'best.pt'}
    assert all(path == str(tracked.folder / name) for name, path in uploads.items())


def test_no_token_reaches_any_file_or_the_output(tracked):
    parameters = json.loads((tracked.folder / 'parameters.json').read_text())
    assert parameters['wandb_token'] == parameters['neptune_token'] == 'REDACTED'  # they were given
    secrets = [token.encode() for token in (*TOKENS.values(), *ENV_TOKENS.values())]
    searched = 0
    for folder, _, names in os.walk(tracked.root):
        for name in names:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                with open(path, 'rb') as file:
                    content = file.read()
                assert not any(secret in content for secret in secrets), path
                searched += 1
    assert searched > 100  # the run folder (source copy, checkpoints), wandb's and neptune's folders
    assert not any(token in tracked.output for token in (*TOKENS.values(), *ENV_TOKENS.values()))
    assert 'wandb sync' in tracked.output  # wandb's own output was captured


def test_results_md_and_the_plots_of_the_run(tracked):
    vox1_o = tracked.results['Vox1-O']
    row = f'| Vox1-O | 16 | {vox1_o["eer"]:.3f} | {vox1_o["min_dcf_0.05"]:.4f} | {vox1_o["min_dcf_0.01"]:.4f} |'
    text = (tracked.folder / 'results.md').read_text()
    assert text.startswith(f'# tracked (oskdft)\n\n## Scores of the best model (epoch {tracked.results["best_epoch"]})')
    assert row in text.splitlines()
    for name in FILES:
        if name.endswith('.png'):
            assert_valid_png(str(tracked.folder / name))


def test_a_run_whose_trackers_fail_to_start_and_to_send_trains_to_the_end(corpus, tmp_path, monkeypatch):
    """neptune refuses its token at the start; wandb's connection breaks at the third metric."""
    monkeypatch.setenv('WANDB_MODE', 'offline')
    monkeypatch.setenv('WANDB_DIR', str(tmp_path))
    monkeypatch.setenv('NEPTUNE_DATA_DIRECTORY', str(tmp_path / 'neptune'))
    sent = []
    send = WandbBackend.log_metric

    def breaking_log_metric(self, name, value, step, at=None):
        if len(sent) == 2:
            raise ConnectionError('Network is unreachable')
        sent.append(name)
        send(self, name, value, step, at)

    monkeypatch.setattr(WandbBackend, 'log_metric', breaking_log_metric)
    main.main(
        [f'{key}={value}' for key, value in corpus.items()]
        + FAST
        + [
            'epoch=1',
            'trials_vox1_e=off',
            'trials_vox1_h=off',
            f'path_log={tmp_path / "exp"}',
            'wandb_user=me',
            'neptune_user=me',
            'neptune_mode=async',
            'neptune_token=not-a-neptune-token-5e6f',
        ]
    )
    (folder,) = (tmp_path / 'exp' / 'OS-KDFT').iterdir()
    assert json.loads((folder / 'results.json').read_text())['Vox1-O']['trials'] == 16
    assert 'final/Vox1-O/eer' in {json.loads(line)['name'] for line in (folder / 'metrics.jsonl').open()}
    log = (folder / 'log.txt').read_text()
    warnings = [line.split(' ', 2)[2] for line in log.splitlines() if 'warning:' in line]
    end = 'it is switched off for this run, training and the local record go on'
    refused = 'NeptuneInvalidApiTokenException: The provided API token is invalid.'
    assert warnings == [
        f'warning: neptune could not start ({refused}); {end}',
        f'warning: wandb failed in log_metric (ConnectionError: Network is unreachable); {end}',
    ]
    assert 'not-a-neptune-token-5e6f' not in log
    (wandb_run,) = glob.glob(str(tmp_path / 'wandb' / 'offline-run-*'))
    records = wandb_records(wandb_run)
    assert len([record for record in records if record['type'] == 'history']) == 2 == len(sent)
    (exit_record,) = [record['exit'] for record in records if record['type'] == 'exit']
    assert exit_record['exit_code'] == 1  # wandb was told the run failed for it
