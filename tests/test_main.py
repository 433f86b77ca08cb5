"""The whole experiment end to end on a very small demo corpus, and the command line's errors."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.multiprocessing import ProcessExitedException

import inference.model
import main
from tests.conftest import FAST, ROOT
from utils import distributed


@pytest.fixture(scope='module')
def run_dir(trained_run):
    return trained_run


def read_metrics(folder):
    return [json.loads(line) for line in (folder / 'metrics.jsonl').read_text().splitlines()]


def test_run_writes_results_for_every_trial_list(run_dir):
    results = json.loads((run_dir / 'results.json').read_text())
    assert set(results) == {'Vox1-O', 'Vox1-E', 'Vox1-H', 'best_epoch', 'params', 'method', 'performance'}
    assert results['method'] == 'oskdft'
    assert results['Vox1-O']['trials'] == 16 and results['Vox1-E']['trials'] == 32
    for name in ('Vox1-O', 'Vox1-E', 'Vox1-H'):
        assert 0.0 <= results[name]['eer'] <= 100.0
        assert 0.0 <= results[name]['min_dcf_0.01'] <= 1.0 + 1e-12
    assert results['best_epoch'] in (1, 2)
    params = results['params']
    assert params['student'] < params['teacher'] and params['backend'] > 0


def test_metrics_hold_the_per_epoch_evaluation_and_no_pass_before_training(run_dir):
    """Vox1-O is scored after every epoch; an untrained model is never the best, so nothing scores it."""
    metrics = read_metrics(run_dir)
    eer_steps = [m['step'] for m in metrics if m['name'] == 'eval/Vox1-O/eer']
    assert eer_steps == [1, 2]
    kd = {m['step']: m['value'] for m in metrics if m['name'] == 'loss/kd'}
    assert set(kd) == {1, 2} and kd[1] > 0 and kd[2] == 0.0  # KD weight (E - e) / E reaches 0
    lrs = {m['step']: m['value'] for m in metrics if m['name'] == 'lr/adapter'}
    assert lrs[1] == pytest.approx(1e-3)  # 10 x the ECAPA LR of epoch 1
    for m in metrics:
        assert set(m) == {'name', 'value', 'step', 'time'}


def test_every_interval_logs_throughput_time_split_memory_eta_and_kd_health(run_dir):
    """Two epochs of 6 steps, an interval every 2: the metrics at the run's steps 2, 4, ..., 12."""
    metrics = read_metrics(run_dir)
    series = {}
    for m in metrics:
        if m['name'].startswith(('perf/', 'health/')):
            series.setdefault(m['name'], []).append((m['step'], m['value']))
    values = {name: [value for _, value in points] for name, points in series.items()}
    assert [step for step, _ in series['perf/utterances_per_second']] == [2, 4, 6, 8, 10, 12]
    for per_second, per_step, data, compute, wait in zip(
        *(
            values[f'perf/{name}']
            for name in (
                'utterances_per_second',
                'seconds_per_step',
                'data_seconds_per_step',
                'compute_seconds_per_step',
                'data_wait_fraction',
            )
        )
    ):
        assert per_second > 0 and per_second * per_step == pytest.approx(4.0)  # batch_size=4 a step
        assert 0.0 <= wait <= 1.0 and data == pytest.approx(wait * per_step)
        assert data + compute == pytest.approx(per_step)
    assert all(0.1 < gib < 64 for gib in values['perf/cpu_resident_gib/rank0'])
    # the ETA from the epoch's mean step time (on a shared machine a step may take 0.2 s or 6 s): the
    # steps left of this epoch, then the next epoch's 6, then the evaluations left, fixed within an epoch
    epoch_eta, run_eta, per_step = (
        values[f'perf/{name}'] for name in ('eta_epoch_seconds', 'eta_run_seconds', 'seconds_per_step')
    )
    for epoch in (1, 2):
        evaluations = []
        for k in range(3):
            i = 3 * (epoch - 1) + k
            mean = sum(per_step[3 * (epoch - 1) : i + 1]) / (k + 1)  # intervals of 2 steps each
            assert epoch_eta[i] == pytest.approx((4 - 2 * k) * mean)
            evaluations.append(run_eta[i] - epoch_eta[i] - (2 - epoch) * 6 * mean)
        # no evaluation is timed before epoch 1's: its ETA has no evaluation time yet, epoch 2's has
        assert (evaluations[0] > 0) == (epoch == 2) and evaluations == pytest.approx([evaluations[0]] * 3)
        assert epoch_eta[3 * epoch - 3] > epoch_eta[3 * epoch - 1] == 0.0
    assert run_eta[3] > run_eta[4] > run_eta[5] > 0  # the last epoch: only its steps vary
    # the last epoch's KD weight is 0: its steps run the SV path alone, so KD health is reported for epoch 1 only
    assert len(values['health/kd_loss']) == 3 and min(values['health/kd_loss']) > 0
    assert len(values['health/kd_mse']) == 3 and min(values['health/kd_mse']) > 0
    assert len(values['health/accuracy']) == 6
    log = (run_dir / 'log.txt').read_text()
    assert 'epoch 1 step 6/6: kd ' in log and 'epoch 2 step 6/6: sv ' in log and 'ETA epoch 0:00:00, run ' in log


def test_results_carry_the_runs_performance_and_hardware(run_dir):
    performance = json.loads((run_dir / 'results.json').read_text())['performance']
    metrics = read_metrics(run_dir)
    assert performance['training_steps'] == 12 and performance['processes'] == 1
    assert performance['utterances_per_second'] * performance['seconds_per_step'] == pytest.approx(4.0)
    assert 0.0 <= performance['data_wait_fraction'] <= 1.0
    resident = [m['value'] for m in metrics if m['name'] == 'perf/cpu_resident_gib/rank0']
    assert performance['peak_cpu_resident_gib'] >= max(resident)
    per_step = [m['value'] for m in metrics if m['name'] == 'perf/seconds_per_step']
    assert performance['training_seconds'] == pytest.approx(2 * sum(per_step))  # 6 intervals of 2 steps
    start = time.mktime(time.strptime(json.loads((run_dir / 'run.json').read_text())['start'], '%Y-%m-%d %H:%M:%S'))
    end = (run_dir / 'results.json').stat().st_mtime
    assert 0 < performance['evaluation_seconds'] < end - start + 1.0 - performance['training_seconds']
    hardware = performance['hardware']
    assert hardware['torch'] == torch.__version__ and hardware['gpus'] == [] and hardware['cpu_cores'] >= 1
    assert 'performance: ' in (run_dir / 'log.txt').read_text()


def test_run_folder_holds_checkpoints_scores_plots_and_parameters(run_dir):
    for name in ('last.pt', 'best.pt'):
        state = torch.load(run_dir / name, map_location='cpu', weights_only=True)
        assert state['epoch'] in (1, 2) and 'student.ssl.feature_extractor.conv_layers.0.conv.weight' in state['model']
    assert len((run_dir / 'scores' / 'Vox1-O.txt').read_text().splitlines()) == 16
    for plot in ('loss.png', 'eer.png', 'det_Vox1-H.png'):
        assert (run_dir / 'plots' / plot).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert json.loads((run_dir / 'parameters.json').read_text())['epoch'] == 2
    assert (run_dir / 'source' / 'main.py').is_file()


def test_best_model_val_chooses_on_the_validation_list_and_scores_the_test_lists_once(corpus, tmp_path):
    """best_model=val: the validation list is scored after every epoch and picks the epoch; no test list
    is scored before the end; the final scores are the chosen epoch's (its validation results kept, not
    scored twice), and best.pt is that epoch with the validation list's threshold."""
    paths = [f'{key}={value}' for key, value in corpus.items()]
    main.main(paths + FAST + ['epoch=3', 'best_model=val', 'trials_val=demo_val.txt', f'path_log={tmp_path}', 'name=v'])
    (folder,) = (tmp_path / 'OS-KDFT').iterdir()
    metrics = read_metrics(folder)
    val = {m['step']: m['value'] for m in metrics if m['name'] == 'eval/Val/eer'}
    assert sorted(val) == [1, 2, 3] and not [m for m in metrics if m['name'].startswith('eval/Vox1')]
    best_epoch = min(val, key=lambda epoch: (val[epoch], epoch))  # the first epoch of the lowest EER
    results = json.loads((folder / 'results.json').read_text())
    assert results['best_epoch'] == best_epoch and results['Val']['eer'] == val[best_epoch]
    assert results['Val']['trials'] == 16 and len((folder / 'scores' / 'Val.txt').read_text().splitlines()) == 16
    final = {m['name']: m['step'] for m in metrics if m['name'].startswith('final/')}
    assert final['final/Vox1-O/eer'] == best_epoch and 'final/Val/eer' not in final
    best = torch.load(folder / 'best.pt', map_location='cpu', weights_only=True)
    assert best['epoch'] == best_epoch and best['best']['list'] == 'Val'
    assert best['best']['threshold'] == results['Val']['eer_threshold']


def test_best_model_last_scores_no_list_before_the_end_and_keeps_the_last_epoch_with_its_threshold(corpus, tmp_path):
    """best_model=last: no Vox1-O score during training, the last epoch's weights in best.pt, and
    mode=verify's threshold measured at the end on that model."""
    paths = [f'{key}={value}' for key, value in corpus.items()]
    main.main(paths + FAST + ['epoch=2', 'best_model=last', f'path_log={tmp_path}'])
    (folder,) = (tmp_path / 'OS-KDFT').iterdir()
    names = {m['name'] for m in read_metrics(folder)}
    assert not any(name.startswith('eval/') for name in names) and 'final/Vox1-O/eer' in names
    results = json.loads((folder / 'results.json').read_text())
    assert results['best_epoch'] == 2
    best, last = (torch.load(folder / name, weights_only=True) for name in ('best.pt', 'last.pt'))
    assert best['epoch'] == last['epoch'] == 2
    assert all(torch.equal(best['model'][name], tensor) for name, tensor in last['model'].items())
    assert best['best'] == {
        'epoch': 2,
        'eer': results['Vox1-O']['eer'],
        'threshold': results['Vox1-O']['eer_threshold'],
        'list': 'Vox1-O',
    }
    assert inference.model.checkpoint_threshold(best)[0] == results['Vox1-O']['eer_threshold']


def test_evaluate_mode_reproduces_the_best_models_results_without_the_teacher(run_dir, corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(inference.model, 'load_teacher', None)  # the checkpoint alone rebuilds the model
    paths = [f'{key}={corpus[key]}' for key in ('path_test', 'path_trials')]
    main.main(paths + FAST + ['mode=evaluate', f'checkpoint={run_dir / "best.pt"}', f'path_log={tmp_path}'])
    (folder,) = (tmp_path / 'OS-KDFT').iterdir()
    again = json.loads((folder / 'results.json').read_text())
    first = json.loads((run_dir / 'results.json').read_text())
    for name in ('Vox1-O', 'Vox1-E', 'Vox1-H'):
        assert again[name]['eer'] == pytest.approx(first[name]['eer'], abs=1e-9)
        assert again[name]['eer_threshold'] == pytest.approx(first[name]['eer_threshold'], abs=1e-12)
    assert again['best_epoch'] == first['best_epoch'] and again['params'] == first['params']
    assert again['performance']['evaluation_seconds'] > 0 and 'training_steps' not in again['performance']


def test_a_demo_checkpoint_scores_the_dataset_paths_given_on_the_command_line(run_dir, corpus, tmp_path, monkeypatch):
    """A demo run's checkpoint carries demo=True; path_test / path_trials given for mode=evaluate
    must be the ones scored, not replaced by the demo corpus's."""
    state = torch.load(run_dir / 'best.pt', map_location='cpu', weights_only=False)
    state['args'] = {**state['args'], 'demo': True, 'path_test': '/demo/test', 'path_trials': '/demo/trials'}
    torch.save(state, tmp_path / 'demo.pt')

    def replaced(args):
        raise AssertionError('the demo corpus replaced the paths given')

    monkeypatch.setattr(main, 'demo_corpus', replaced)
    paths = [f'{key}={corpus[key]}' for key in ('path_test', 'path_trials')]
    main.main(paths + ['mode=evaluate', f'checkpoint={tmp_path / "demo.pt"}', f'path_log={tmp_path / "exp"}'])
    (folder,) = (tmp_path / 'exp' / 'OS-KDFT').iterdir()
    results = json.loads((folder / 'results.json').read_text())
    lines = (Path(corpus['path_trials']) / 'veri_test2.txt').read_text().splitlines()
    assert results['Vox1-O']['trials'] == len(lines) > 0
    assert f'test={corpus["path_test"]}' in (folder / 'log.txt').read_text()


@pytest.mark.parametrize(
    'argument, message',
    [
        ('epochs=3', "unknown argument 'epochs'. Did you mean epoch or kd_epochs or lmft_epochs?"),
        ('nonsense=1', "unknown argument 'nonsense'"),
        ('path_train=/no/such/folder', "path_train='/no/such/folder' is not a folder"),
        ('resume=/no/such/last.pt', "resume='/no/such/last.pt': no such checkpoint file"),
        ('amp=fp32', "amp='fp32': expected one of auto, none, bf16, fp16"),
        ('best_model=best', "best_model='best': expected one of vox1_o, val, last"),
        ('demo_test_speakers=2', 'demo_test_speakers=2: expected 4 or more'),
    ],
)
def test_bad_command_line_fails_at_once_with_one_clear_line(argument, message, tmp_path):
    """In this process (main.py's own exit with that line: the test below)."""
    import main

    with pytest.raises(main.USER_ERRORS) as error:
        main.main([argument, f'path_log={tmp_path / "exp"}'])
    assert main.user_message(error.value) == message or main.user_message(error.value).startswith(message)
    assert not (tmp_path / 'exp').exists()


def test_python_main_py_exits_1_with_the_one_line_on_standard_error(tmp_path):
    done = subprocess.run(
        [sys.executable, 'main.py', 'epochs=3', f'path_log={tmp_path / "exp"}'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: unknown argument 'epochs'. Did you mean epoch or kd_epochs or lmft_epochs? Every key is listed in "
        'arguments.py (python main.py help).'
    )
    assert not (tmp_path / 'exp').exists()


def test_unreadable_training_files_past_max_bad_files_stop_with_one_line_and_keep_the_log(corpus, tmp_path):
    train = tmp_path / 'train'
    shutil.copytree(corpus['path_train'], train)
    bad = sorted(train.rglob('*.wav'))[0]
    bad.write_bytes(b'not audio')
    paths = [f'{key}={value}' for key, value in corpus.items() if key != 'path_train']
    command = [
        sys.executable,
        'main.py',
        f'path_train={train}',
        f'path_log={tmp_path / "exp"}',
        'epoch=1',
        'max_bad_files=0',
        *paths,
        *FAST,
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    expected = (
        f'error: path_train: 1 training files cannot be read (more than max_bad_files=0), the first: {bad}; '
        f'repair or remove them, or raise max_bad_files'
    )
    assert done.stderr.strip().splitlines()[-1] == expected
    (folder,) = (tmp_path / 'exp' / 'OS-KDFT').iterdir()
    log = (folder / 'log.txt').read_text()
    assert f'path_train: 1 file whose header cannot be read is left out: {bad.relative_to(train)}' in log
    assert 'stopped: path_train: 1 training files cannot be read' in log


def test_processes_started_by_main_itself_train_as_one_job(corpus, tmp_path):
    """The path `python main.py` takes on a machine with several GPUs (one process each, started
    by main), run here on CPU with gloo."""
    paths = [f'{key}={value}' for key, value in corpus.items()]
    args, state = main.resolve_arguments(paths + FAST + ['epoch=1', 'log_interval=3', f'path_log={tmp_path}'])
    distributed.spawn(main.run_reporting_errors, 2, args, state)
    (folder,) = (tmp_path / 'OS-KDFT').iterdir()
    assert 'device cpu x 2 process(es)' in (folder / 'log.txt').read_text()
    assert json.loads((folder / 'results.json').read_text())['Vox1-O']['trials'] == 16
    metrics = {(m['name'], m['step']): m['value'] for m in read_metrics(folder)}
    assert metrics[('train/sv', 3)] > 0
    for name in ('kd', 'sv', 'total'):  # the interval means are the global batch's, as the epoch's are
        assert metrics[(f'train/{name}', 6)] == pytest.approx(metrics[(f'loss/{name}', 1)], rel=1e-12)


def test_a_spawned_process_reports_a_bad_argument_in_one_line(tmp_path, capfd):
    args, state = main.resolve_arguments(['demo_test_speakers=2', f'path_log={tmp_path}'])
    with pytest.raises(ProcessExitedException, match='exited with exit code 1|terminated with exit code 1'):
        distributed.spawn(main.run_reporting_errors, 2, args, state)
    assert 'error: demo_test_speakers=2: expected 4 or more' in capfd.readouterr().err
    assert not (tmp_path / 'OS-KDFT').exists()


@pytest.mark.parametrize(
    'saved, given, used',
    [
        ({'eval_segments_like_original': False}, ['eval_segments_like_original=true'], True),
        ({'eval_segments_like_original': True}, ['eval_segments_like_original=false'], False),
        ({'eval_segments_like_original': True}, [], True),
        ({}, [], False),  # a checkpoint written before the switch existed: the default
    ],
)
def test_evaluate_mode_takes_eval_segments_like_original_from_the_command_line(tmp_path, saved, given, used):
    path = tmp_path / 'best.pt'
    torch.save({'model': {}, 'args': {'method': 'oskdft', **saved}, 'epoch': 1, 'num_classes': 2}, path)
    args, _ = main.resolve_arguments(['mode=evaluate', f'checkpoint={path}', *given])
    assert args['eval_segments_like_original'] is used
