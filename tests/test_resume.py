"""Runs that are interrupted (SIGKILL at any moment, SIGTERM as a cluster pre-empts) and resumed
reach the weights of an uninterrupted run bit for bit; what the checkpoints hold; a failing
rank ends a 2-process job fast; evaluation from a checkpoint alone."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from data.voxceleb import read_trials
from tests.conftest import ROOT, TWO_PROCESSES, command, run_folder, run_main

MID_EPOCH_2 = 'epoch 1 done, 2 steps of the next'  # 6 steps an epoch: 24 utterances, batch 4


def interrupt(args, path_log, signal_number, when=MID_EPOCH_2, signal_group=False, **popen):
    """Starts a run and sends it (or its whole process group) a signal once `when` is in its log;
    returns the finished process."""
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    deadline = time.monotonic() + 240
    while not any(when in log.read_text() for log in path_log.glob('OS-KDFT/*/log.txt')):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-4000:]
        time.sleep(0.02)
    if signal_group:
        os.killpg(process.pid, signal_number)
    else:
        process.send_signal(signal_number)
    process.communicate(timeout=120)
    return process


def metric_values(folder):
    return [(m['name'], m['step'], m['value']) for m in map(json.loads, (folder / 'metrics.jsonl').open())]


def load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def assert_same_run(resumed, reference):
    """Bitwise-equal final weights and optimizer state, the same metrics and results (but for the
    run's timings)."""
    got, expected = load(resumed / 'last.pt'), load(reference / 'last.pt')
    assert got['model'].keys() == expected['model'].keys()
    for name, tensor in expected['model'].items():
        assert torch.equal(got['model'][name], tensor), name
    for index, state in expected['optimizer']['state'].items():
        for key in ('exp_avg', 'exp_avg_sq', 'step'):
            assert torch.equal(got['optimizer']['state'][index][key], state[key]), (index, key)
    assert metric_values(resumed) == metric_values(reference)
    got, expected = (json.loads((folder / 'results.json').read_text()) for folder in (resumed, reference))
    assert got.pop('performance').keys() == expected.pop('performance').keys() and got == expected


@pytest.fixture(scope='module')
def reference(corpus, tmp_path_factory):
    path_log = tmp_path_factory.mktemp('reference')
    run_main(*command(corpus, path_log))
    return run_folder(path_log)


@pytest.mark.parametrize(
    'minutes, when, steps',
    [
        ('0', MID_EPOCH_2, range(2, 6)),  # last.pt after every step: within epoch 2
        ('1000', 'saved last.pt and best.pt: epoch 1 done', [0]),  # only at epoch ends: between epochs 1 and 2
    ],
)
def test_a_killed_run_resumed_reaches_the_uninterrupted_weights(corpus, reference, tmp_path, minutes, when, steps):
    killed = interrupt(command(corpus, tmp_path, f'checkpoint_minutes={minutes}'), tmp_path, signal.SIGKILL, when)
    assert killed.returncode == -signal.SIGKILL
    folder = run_folder(tmp_path)
    saved = load(folder / 'last.pt')
    assert saved['epoch'] == 1 and saved['step'] in steps
    done = run_main(sys.executable, 'main.py', f'path_log={tmp_path}', 'name=run', 'resume=auto')
    assert f'run folder (resumed): {folder}' in done.stdout
    assert run_folder(tmp_path) == folder  # no second run folder
    assert_same_run(folder, reference)


def test_sigterm_saves_says_how_to_resume_exits_0_and_the_resumed_run_is_exact(corpus, reference, tmp_path):
    stopped = interrupt(
        command(corpus, tmp_path, 'checkpoint_minutes=1000'), tmp_path, signal.SIGTERM, when='epoch 1 Vox1-O'
    )
    folder = run_folder(tmp_path)
    assert stopped.returncode == 0
    saved = load(folder / 'last.pt')
    assert (saved['epoch'], saved['step']) in ((1, 0), (1, 1), (1, 2))  # the step it was in, or the epoch's end
    log = (folder / 'log.txt').read_text()
    assert f'SIGTERM: stopped after epoch 1 and {saved["step"]} steps of the next' in log
    assert f'Continue with: python main.py resume={folder / "last.pt"}' in log
    run_main(sys.executable, 'main.py', f'resume={folder / "last.pt"}')
    assert_same_run(folder, reference)


def test_resume_refuses_to_change_the_experiment(reference):
    done = subprocess.run(
        [sys.executable, 'main.py', f'resume={reference / "last.pt"}', 'lr=0.5'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        'error: resume continues a run with its own settings: lr cannot change (the run '
        'has lr=0.0001); start a new run to change them'
    )


def test_checkpoints_hold_everything_a_resume_needs(reference):
    last, best = load(reference / 'last.pt'), load(reference / 'best.pt')
    results = json.loads((reference / 'results.json').read_text())
    assert (last['epoch'], last['step']) == (3, 0)
    assert last['best']['epoch'] == results['best_epoch'] == best['epoch']
    trained = [name for name, tensor in last['model'].items() if tensor.is_floating_point()]
    assert len(last['optimizer']['state']) == sum(1 for name in trained if 'running_' not in name)
    assert [group['name'] for group in last['optimizer']['param_groups']] == ['backend', 'student', 'adapter']
    backend = last['optimizer']['param_groups'][0]['params']  # (LayerDrop skips student layers at times)
    assert all(last['optimizer']['state'][index]['step'].item() == 18 for index in backend)  # 3 epochs x 6 steps
    (rng,) = last['rng']  # one process: one random state
    assert set(rng) >= {'python', 'numpy', 'torch'} and last['world_size'] == 1
    logged = [json.loads(line) for line in (reference / 'metrics.jsonl').open()]
    before = [m for m in logged if m['time'] <= last['saved_at']]
    assert logged[: len(before)] == before and 'metrics' not in last  # metrics.jsonl holds them, not the checkpoint
    assert {(m['name'].split('/')[1], m['step']) for m in logged[len(before) :]} == {  # the best model's final scores
        (name, results['best_epoch']) for name in ('Vox1-O', 'Vox1-E', 'Vox1-H')
    }
    assert last['args']['num_hidden_layers'] == 2 and last['args']['epoch'] == 3 and last['num_classes'] == 6


def test_the_best_model_is_really_restored_for_the_final_scores(reference):
    results = json.loads((reference / 'results.json').read_text())
    eval_o = {(name, step): value for name, step, value in metric_values(reference) if name.startswith('eval/Vox1-O/')}
    best = results['best_epoch']
    assert best < 3, 'this check needs a best epoch before the last one'
    for metric in ('eer', 'min_dcf_0.05', 'min_dcf_0.01'):
        assert results['Vox1-O'][metric] == eval_o[(f'eval/Vox1-O/{metric}', best)]
    assert any(
        eval_o[(f'eval/Vox1-O/{metric}', 3)] != results['Vox1-O'][metric]
        for metric in ('eer', 'min_dcf_0.05', 'min_dcf_0.01')
    )  # the last epoch would differ


def test_evaluate_mode_needs_only_the_checkpoint(reference, tmp_path):
    run_main(sys.executable, 'main.py', 'mode=evaluate', f'checkpoint={reference / "best.pt"}', f'path_log={tmp_path}')
    again = json.loads((run_folder(tmp_path) / 'results.json').read_text())
    first = json.loads((reference / 'results.json').read_text())
    for name in ('Vox1-O', 'Vox1-E', 'Vox1-H'):
        assert again[name] == first[name]


def test_a_rank_that_raises_ends_the_two_process_job_fast_with_its_message(corpus, tmp_path):
    test_root = tmp_path / 'test'
    subprocess.run(['cp', '-r', corpus['path_test'], str(test_root)], check=True)
    keys = sorted(
        set(read_trials(os.path.join(corpus['path_trials'], 'veri_test2.txt')).utterances())
        | set(read_trials(os.path.join(corpus['path_trials'], 'list_test_all2.txt')).utterances())
    )
    bad = test_root / keys[1]  # in rank 1's shard of the enrollment
    bad.write_bytes(b'not audio')
    args = command(
        {**corpus, 'path_test': test_root},
        tmp_path / 'exp',
        launcher=TWO_PROCESSES,
    )
    start = time.monotonic()
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    seconds = time.monotonic() - start
    assert done.returncode != 0
    assert f'error: path_test: cannot read audio file {bad}' in done.stderr
    assert seconds < 60, f'the job took {seconds:.0f} s to end'


def test_a_two_process_run_stopped_by_sigterm_resumes_on_one_process(corpus, tmp_path):
    # the whole group gets the signal, as a cluster's scheduler sends it
    interrupt(
        command(corpus, tmp_path, 'checkpoint_minutes=0', launcher=TWO_PROCESSES),
        tmp_path,
        signal.SIGTERM,
        start_new_session=True,
        signal_group=True,
    )
    folder = run_folder(tmp_path)  # rank 0 alone wrote a run folder
    saved = load(folder / 'last.pt')
    assert saved['world_size'] == 2 and len(saved['rng']) == 2 and saved['epoch'] == 1
    log = (folder / 'log.txt').read_text()
    assert 'device cpu x 2 process(es)' in log and 'batch 4 = 2 x 2' in log
    assert f'Continue with: torchrun --nproc_per_node=2 main.py resume={folder / "last.pt"}' in log
    run_main(sys.executable, 'main.py', f'path_log={tmp_path}', 'name=run', 'resume=auto')
    log = (folder / 'log.txt').read_text()
    assert 'resumed on 1 processes, saved on 2: the data order is the same, the random streams' in log
    results = json.loads((folder / 'results.json').read_text())
    assert set(results) == {'Vox1-O', 'Vox1-E', 'Vox1-H', 'best_epoch', 'params', 'method', 'performance'}
    assert [step for name, step, _ in metric_values(folder) if name == 'loss/sv'] == [1, 2, 3]
    assert results['performance']['training_steps'] == 3 * 6  # the epoch before the stop counted too


KD_FT = ('method=kd_ft', 'kd_epochs=1', 'epoch=2')


@pytest.fixture(scope='module')
def kd_ft_reference(corpus, tmp_path_factory):
    path_log = tmp_path_factory.mktemp('kd_ft')
    run_main(*command(corpus, path_log, *KD_FT))
    return run_folder(path_log)


@pytest.mark.parametrize(
    'minutes, when, steps',
    [
        ('1000', 'epoch 1 done, 0 steps of the next', [0]),  # at the end of the KD stage
        ('0', MID_EPOCH_2, range(2, 6)),  # within the first fine-tuning epoch
    ],
)
def test_kd_ft_resumed_across_its_stages_reaches_the_uninterrupted_weights(
    corpus, kd_ft_reference, tmp_path, minutes, when, steps
):
    """The optimizer state is reset where the fine-tuning stage starts, and only there: not again
    when a run resumes within that stage's first epoch."""
    killed = interrupt(
        command(corpus, tmp_path, *KD_FT, f'checkpoint_minutes={minutes}'), tmp_path, signal.SIGKILL, when
    )
    assert killed.returncode == -signal.SIGKILL
    folder = run_folder(tmp_path)
    saved = load(folder / 'last.pt')
    assert saved['epoch'] == 1 and saved['step'] in steps and saved['args']['method'] == 'kd_ft'
    run_main(sys.executable, 'main.py', f'resume={folder / "last.pt"}')
    assert_same_run(folder, kd_ft_reference)
    assert 'epoch 2: the next stage of kd_ft starts, optimizer state reset' in (kd_ft_reference / 'log.txt').read_text()


@pytest.mark.parametrize('method', ['kd_ft', 'ft'])
def test_the_baselines_train_as_one_job_of_two_processes(two_process_run, method):
    """kd_ft's KD stage leaves the back-end without gradients (DDP has to be told); ft trains
    every teacher layer."""
    folder = two_process_run(method)
    results = json.loads((folder / 'results.json').read_text())
    assert results['method'] == method and results['best_epoch'] == (2 if method == 'kd_ft' else 1)
    assert 'device cpu x 2 process(es)' in (folder / 'log.txt').read_text()
