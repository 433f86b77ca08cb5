"""QMF on a trained model: mode=evaluate qmf=true fits the calibration on the training speakers, scores
every list with it into results.json and writes the checkpoint with it; mode=evaluate of that checkpoint
and mode=verify apply it; a training run's checkpoints get it only where they hold the calibrated weights."""

import json
import math
import shutil

import numpy as np
import pytest

from evaluation.qmf import llr_threshold
from inference.evaluate import CALIBRATED
from tests.conftest import FAST
from tests.inference.common import read_scores, run_mode
from trainer.state import save_calibration
from utils.checkpoint import load_checkpoint, write_checkpoint

QMF = ('qmf=true', 'qmf_trials=60', 'qmf_top_k=3', 'asnorm_cohort_utts=1')


@pytest.fixture(scope='module')
def calibrated(trained_run, corpus, tmp_path_factory):
    """(run folder, results.json) of mode=evaluate qmf=true on the trained run's best.pt."""
    paths = [f'{key}={value}' for key, value in corpus.items()]
    root = tmp_path_factory.mktemp('qmf')
    return run_mode(root, 'mode=evaluate', f'checkpoint={trained_run / "best.pt"}', *paths, *FAST, *QMF)


def test_each_list_gets_calibrated_figures_scores_and_the_checkpoint_its_calibration(calibrated):
    folder, results = calibrated
    lists = [name for name, value in results.items() if isinstance(value, dict) and 'eer' in value]
    assert lists
    for name in lists:
        figures = results[name]['qmf']
        assert {'eer', 'min_dcf_0.05', 'min_dcf_0.01', 'act_dcf_0.05', 'act_dcf_0.01', 'cllr'} <= set(figures)
        raw = {(e, t): s for _, e, t, s in read_scores(folder, name)}
        llrs = read_scores(folder, f'{name}-qmf')
        assert [(e, t) for _, e, t, _ in llrs] == list(raw)  # the same trials, in order
        assert len({s for *_, s in llrs}) > 1
    described = results['qmf']
    assert described['features'][0] == 'score' and len(described['weights']) == len(described['features'])
    assert described['trials'] == 60 and described['top_k'] == 3 and described['p_target'] == 0.01
    assert described['threshold'] == pytest.approx(math.log(99))
    state = load_checkpoint(folder / CALIBRATED)
    assert state['qmf']['weights'] == described['weights'] and state['qmf']['cohort_full'].shape[0] == 6


def test_the_calibrated_checkpoint_scores_as_the_fit_did(calibrated, corpus, tmp_path):
    folder, results = calibrated
    paths = [f'{key}={value}' for key, value in corpus.items()]
    again, applied = run_mode(tmp_path, 'mode=evaluate', f'checkpoint={folder / CALIBRATED}', *paths, *FAST)
    for name in ('Vox1-O', 'Vox1-E'):
        assert applied[name]['qmf'] == pytest.approx(results[name]['qmf'])
        expected = np.array([s for *_, s in read_scores(folder, f'{name}-qmf')])
        np.testing.assert_allclose([s for *_, s in read_scores(again, f'{name}-qmf')], expected, atol=1e-7)


@pytest.fixture(scope='module')
def pair(calibrated, corpus):
    """(enroll, test, its LLR in scores/Vox1-O-qmf.txt) of the Vox1-O trial of the highest raw score."""
    folder, _ = calibrated
    raw = max(read_scores(folder), key=lambda row: row[3])
    llr = {(e, t): s for _, e, t, s in read_scores(folder, 'Vox1-O-qmf')}[raw[1], raw[2]]
    return f'{corpus["path_test"]}/{raw[1]}', f'{corpus["path_test"]}/{raw[2]}', llr


def verify(root, checkpoint, pair, *extra):
    return run_mode(root, 'mode=verify', f'checkpoint={checkpoint}', f'enroll={pair[0]}', f'test={pair[1]}', *extra)


@pytest.mark.parametrize('shift, decision', [(-1e-3, 'accept'), (1e-3, 'reject')])
def test_verify_gives_the_llr_and_decides_at_the_bayes_threshold_of_p_target(
    calibrated, pair, tmp_path, shift, decision
):
    """p_target chosen so that log((1 - p) / p) lies just below / above the pair's LLR."""
    p_target = 1 / (1 + math.exp(pair[2] + shift))
    folder, results = verify(tmp_path, calibrated[0] / CALIBRATED, pair, f'p_target={p_target!r}', *FAST)
    assert results['llr'] == pytest.approx(pair[2], abs=1e-5)
    assert results['threshold'] == pytest.approx(llr_threshold(p_target)) == pytest.approx(pair[2] + shift)
    assert results['decision'] == decision and results['p_target'] == p_target
    assert results['posterior'] == pytest.approx(1 / (1 + math.exp(shift)), abs=1e-4)  # sigmoid(LLR - threshold)
    assert results['threshold_source'].startswith('QMF: the Bayes threshold')


def test_verify_at_the_default_p_target_and_at_a_given_threshold_on_the_llr(calibrated, pair, tmp_path):
    _, results = verify(tmp_path, calibrated[0] / CALIBRATED, pair, *FAST)
    assert results['threshold'] == pytest.approx(math.log(99))
    assert results['decision'] == ('accept' if results['llr'] >= math.log(99) else 'reject')
    _, given = verify(tmp_path, calibrated[0] / CALIBRATED, pair, f'threshold={pair[2] + 1e-3!r}', *FAST)
    assert (given['decision'], given['threshold_source']) == ('reject', 'threshold given, on the LLR')


def test_a_training_run_saves_the_calibration_only_in_checkpoints_of_the_calibrated_weights(
    trained_run, calibrated, tmp_path
):
    state = load_checkpoint(trained_run / 'best.pt')
    shutil.copy(trained_run / 'best.pt', tmp_path / 'best.pt')
    write_checkpoint(str(tmp_path / 'last.pt'), dict(state, epoch=state['epoch'] + 1))
    calibration = load_checkpoint(calibrated[0] / CALIBRATED)['qmf']

    class Logger:
        run_dir = str(tmp_path)
        lines = []

        def log_text(self, text):
            self.lines.append(text)

    save_calibration(Logger(), calibration, state['epoch'], 'best.pt')
    assert load_checkpoint(tmp_path / 'best.pt')['qmf']['weights'] == calibration['weights']
    assert 'qmf' not in load_checkpoint(tmp_path / 'last.pt')
    write_checkpoint(str(tmp_path / 'last.pt'), state)  # the last epoch the best: last.pt holds the same weights
    save_calibration(Logger(), calibration, state['epoch'], 'best.pt')
    assert load_checkpoint(tmp_path / 'last.pt')['qmf']['intercept'] == calibration['intercept']


def test_embed_writes_what_calibrates_two_rows_by_hand(calibrated, pair, tmp_path):
    """The LLR of the pair from embed's files alone (the matrix, qmf.npz, qmf.json), by the formula
    docs/inference.md gives, equals the one evaluation saved."""
    (tmp_path / 'files.txt').write_text(f'{pair[0]}\n{pair[1]}\n')
    out = tmp_path / 'out'
    run_mode(tmp_path, 'mode=embed', f'checkpoint={calibrated[0] / CALIBRATED}', f'wav_list={tmp_path / "files.txt"}',
             f'out={out}', *FAST)  # fmt: skip
    rows = np.load(out / 'embeddings.npy').astype(np.float64)
    quality = np.load(out / 'qmf.npz')
    calibration = json.loads((out / 'qmf.json').read_text())
    assert calibration['asnorm_top_k'] == 0 and 'asnorm_mean' not in quality
    features = [
        0.5 * rows[0] @ rows[1],
        *sorted(quality['log_seconds']),
        *sorted(quality['imposter_mean']),
    ]
    llr = np.dot(calibration['weights'], features) + calibration['intercept'] - calibration['prior_log_odds']
    assert llr == pytest.approx(pair[2], abs=1e-5)
