"""What a person reads of a run: the plots (drawn once per epoch), results.md, and several runs
compared in one table by `python -m log.compare`."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import log.plots
from log.compare import comparison, find_runs, read_run
from log.plots import draw_score_plots, score_densities
from log.report import results_markdown
from tests.conftest import ROOT
from tests.log.test_local import assert_valid_png, build

RESULTS = {
    'Vox1-O': {
        'eer': 2.5,
        'min_dcf_0.05': 0.125,
        'min_dcf_0.01': 0.25,
        'trials': 37720,
        'asnorm': {'eer': 2.25, 'min_dcf_0.05': 0.1, 'min_dcf_0.01': 0.2, 'top_k': 300, 'cohort': 5994},
        'qmf': {'eer': 2.125, 'min_dcf_0.05': 0.0875, 'min_dcf_0.01': 0.175, 'act_dcf_0.01': 0.19, 'cllr': 0.1},
    },
    'Vox1-H': {
        'eer': float('nan'),
        'min_dcf_0.05': float('nan'),
        'min_dcf_0.01': float('nan'),
        'trials': 550894,
        'nonfinite': 3,
    },
    'Vox1-E': {'eer': 3.0, 'min_dcf_0.05': 0.2, 'min_dcf_0.01': 0.3, 'trials': 579818},
    'best_epoch': 7,
    'method': 'oskdft',
    'params': {'teacher': 315438720, 'student': 75360000, 'backend': 2100000},
}
PARAMETERS = {
    'name': 'oskdft-vox2',
    'method': 'oskdft',
    'preset': 'vox2',
    'model_name_or_path': 'tiny',
    'lr': 0.0001,
    'seed': 1,
    'path_log': './exp',
    'wandb_token': 'REDACTED',
}


def test_plots_are_drawn_once_per_epoch_from_every_metric_so_far(tmp_path, monkeypatch):
    drawn = []
    draw = log.plots.plot_curves

    def recording_plot_curves(file, series, ylabel, title, yscale='linear'):
        drawn.append((ylabel, series, yscale))
        draw(file, series, ylabel, title, yscale)

    monkeypatch.setattr(log.plots, 'plot_curves', recording_plot_curves)
    logger = build(tmp_path)
    logger.log_metric('eval/Vox1-O/eer', 40.0, 0)
    for epoch in (1, 2):
        for step in (1, 2, 3):
            logger.log_metric('train/kd', 9.0, 3 * (epoch - 1) + step)
        logger.log_metric('loss/kd', 10.0 / epoch, epoch)
        logger.log_metric('loss/sv', 4.0 - epoch, epoch)
        logger.log_metric('lr/backend', 1e-4 / epoch, epoch)
        logger.log_metric('lr/adapter', 1e-3 / epoch, epoch)
        logger.log_metric('eval/Vox1-O/eer', 40.0 - 10 * epoch, epoch)
        logger.log_metric('eval/Vox1-O/min_dcf_0.05', 0.5, epoch)
        assert len(drawn) == 3 * (epoch - 1)  # nothing drawn while the epoch logs its metrics
        logger.end_epoch()
        assert len(drawn) == 3 * epoch
    assert drawn[3:] == [
        ('loss', {'kd': [(1, 10.0), (2, 5.0)], 'sv': [(1, 3.0), (2, 2.0)]}, 'linear'),
        ('learning rate', {'backend': [(1, 1e-4), (2, 5e-5)], 'adapter': [(1, 1e-3), (2, 5e-4)]}, 'log'),
        ('EER (%)', {'Vox1-O': [(0, 40.0), (1, 30.0), (2, 20.0)]}, 'linear'),
    ]
    plots = os.path.join(logger.run_dir, 'plots')
    assert sorted(os.listdir(plots)) == ['eer.png', 'loss.png', 'lr.png']
    for name in os.listdir(plots):
        assert_valid_png(os.path.join(plots, name))
    logger.finish()


def test_score_histograms_are_densities_of_each_class_over_shared_bins():
    scores = np.arange(11.0)  # 10 bins of width 1 over [0, 10]; the last bin holds 9 and 10
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    edges, target, nontarget = score_densities(scores, labels)
    np.testing.assert_allclose(edges, np.arange(11.0))
    np.testing.assert_allclose(target, [0, 0, 0, 0, 0, 0, 0.2, 0.2, 0.2, 0.4])  # counts / (5 trials x width 1)
    np.testing.assert_allclose(nontarget, [1 / 6] * 6 + [0] * 4)


def test_score_plots_of_a_list_and_none_for_non_finite_scores(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(50, int), np.zeros(150, int)]
    scores = np.r_[rng.normal(1, 0.5, 50), rng.normal(0, 0.5, 150)]
    paths = draw_score_plots(str(tmp_path), 'Vox1-O', labels, scores)
    assert paths == [str(tmp_path / 'det_Vox1-O.png'), str(tmp_path / 'scores_Vox1-O.png')]
    for path in paths:
        assert_valid_png(path)
    scores[3] = np.nan
    assert draw_score_plots(str(tmp_path / 'nan'), 'Vox1-O', labels, scores) == []


def test_results_md_tables_the_scores_with_and_without_asnorm_and_qmf_and_the_key_settings():
    assert (
        results_markdown(RESULTS, PARAMETERS)
        == """# oskdft-vox2 (oskdft)

## Scores of the best model (epoch 7)

| trial list | trials | EER (%) | minDCF 0.05 | minDCF 0.01 |
|---|---|---|---|---|
| Vox1-O | 37720 | 2.500 | 0.1250 | 0.2500 |
| Vox1-O + AS-norm (top 300 of 5994) | 37720 | 2.250 | 0.1000 | 0.2000 |
| Vox1-O + QMF | 37720 | 2.125 | 0.0875 | 0.1750 |
| Vox1-E | 579818 | 3.000 | 0.2000 | 0.3000 |
| Vox1-H | 550894 | not finite | not finite | not finite |

## Settings

| setting | value |
|---|---|
| method | `oskdft` |
| preset | `vox2` |
| model_name_or_path | `tiny` |
| lr | `0.0001` |
| seed | `1` |
| teacher parameters | 315,438,720 |
| student parameters | 75,360,000 |
| backend parameters | 2,100,000 |
"""
    )


PERFORMANCE = {
    'utterances_per_second': 612.34,
    'data_wait_fraction': 0.0421,
    'seconds_per_step': 0.2091,
    'training_steps': 123456,
    'training_seconds': 93784.0,
    'evaluation_seconds': 4321.0,
    'peak_gpu_allocated_gib': 61.234,
    'peak_gpu_reserved_gib': 70.5,
    'processes': 8,
    'hardware': {
        'cpu': 'AMD EPYC 9654',
        'cpu_cores': 192,
        'cpu_cores_available': 192,
        'gpus': ['NVIDIA H100 80GB HBM3'] * 8,
        'gpu_count': 8,
        'torch': '2.13.0',
        'cuda': '13.0',
    },
}


def test_results_md_ends_with_the_runs_performance_and_hardware():
    text = results_markdown({**RESULTS, 'performance': PERFORMANCE}, PARAMETERS)
    assert text.endswith(
        """## Performance

|  | value |
|---|---|
| utterances per second (all processes) | 612.3 |
| waiting for data | 4.2% of the training time |
| seconds per step | 0.209 |
| training | 1 day, 2:03:04 (123,456 steps) |
| evaluation | 1:12:01 |
| peak GPU memory (any process) | 61.23 GiB allocated, 70.50 reserved |
| processes | 8 |
| CPU | AMD EPYC 9654 (192 cores) |
| GPUs | 8 x NVIDIA H100 80GB HBM3 |
| torch / CUDA | 2.13.0 / 13.0 |
"""
    )
    cpu = {**PERFORMANCE, 'peak_cpu_resident_gib': 1.4369, 'hardware': {**PERFORMANCE['hardware'], 'gpus': []}}
    del cpu['peak_gpu_allocated_gib'], cpu['peak_gpu_reserved_gib']
    text = results_markdown({**RESULTS, 'performance': cpu}, PARAMETERS)
    assert '| peak resident memory (any process) | 1.44 GiB |' in text and '| GPUs | none |' in text


def test_the_run_folder_holds_results_md_of_its_results(tmp_path):
    logger = build(tmp_path)
    logger.log_parameter(PARAMETERS)
    logger.save_results(RESULTS)
    logger.finish()
    with open(os.path.join(logger.run_dir, 'results.md')) as file:
        assert file.read() == results_markdown(RESULTS, PARAMETERS)


def write_run(folder, parameters, results=None):
    os.makedirs(folder)
    with open(os.path.join(folder, 'parameters.json'), 'w') as file:
        json.dump(parameters, file)
    if results is not None:
        with open(os.path.join(folder, 'results.json'), 'w') as file:
            json.dump(results, file)


@pytest.fixture
def runs(tmp_path):
    """Three run folders: oskdft (O with AS-norm, and E), student_ft (O only), and one unfinished."""
    parent = tmp_path / 'OS-KDFT'
    write_run(
        parent / 'a-1', dict(PARAMETERS), {key: RESULTS[key] for key in ('Vox1-O', 'Vox1-E', 'best_epoch', 'params')}
    )
    write_run(
        parent / 'b-2',
        dict(PARAMETERS, method='student_ft'),
        {
            'Vox1-O': {'eer': 4.0, 'min_dcf_0.05': 0.3, 'min_dcf_0.01': 0.4, 'trials': 37720},
            'best_epoch': 9,
            'params': {'student': 1234},
        },
    )
    write_run(parent / 'c-3', dict(PARAMETERS, method='kd_ft', lr=0.001))
    (parent / 'not-a-run').mkdir()
    return parent


def test_compare_sets_the_runs_side_by_side_with_the_settings_that_differ(runs):
    found = find_runs([str(runs)])
    assert [os.path.basename(path) for path in found] == ['a-1', 'b-2', 'c-3']
    assert comparison([read_run(path) for path in found]) == (
        'same in every run: preset=vox2, model_name_or_path=tiny, seed=1\n'
        '\n'
        '| run | method | lr | best epoch | student parameters | Vox1-O EER (%) | Vox1-O minDCF 0.05 | '
        'Vox1-O minDCF 0.01 | Vox1-E EER (%) | Vox1-E minDCF 0.05 | Vox1-E minDCF 0.01 | Vox1-O AS-norm EER (%) | '
        'Vox1-O AS-norm minDCF 0.05 | Vox1-O AS-norm minDCF 0.01 |\n'
        '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
        '| a-1 | oskdft | 0.0001 | 7 | 75,360,000 | 2.500 | 0.1250 | 0.2500 | 3.000 | 0.2000 | 0.3000 | 2.250 | '
        '0.1000 | 0.2000 |\n'
        '| b-2 | student_ft | 0.0001 | 9 | 1,234 | 4.000 | 0.3000 | 0.4000 | - | - | - | - | - | - |\n'
        '| c-3 | kd_ft | 0.001 | unfinished | - | - | - | - | - | - | - | - | - | - |'
    )


def test_compare_from_the_command_line(runs):
    done = subprocess.run(
        [sys.executable, '-m', 'log.compare', str(runs / 'b-2'), str(runs / 'a-1'), '--all'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith('| run | method | preset | model_name_or_path | lr | seed | best epoch |')
    assert [line.split(' | ')[0] for line in lines[2:]] == ['| b-2', '| a-1']  # in the order given
    done = subprocess.run(
        [sys.executable, '-m', 'log.compare', str(runs / 'nothing-here')],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and done.stderr.strip() == f'error: {runs / "nothing-here"}: no such folder'
