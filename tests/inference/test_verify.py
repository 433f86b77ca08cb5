"""mode=verify: the score of a pair as evaluation scored it, the decision at the checkpoint's Vox1-O
threshold or at threshold=X, files read converted with one note, and one clear line for a user's error.

Tolerance: scores.txt keeps 8 decimals (1e-5 on the score)."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from tests.inference.common import checkpoints_not_ours, read_scores, run_mode, user_error
from utils.checkpoint import load_checkpoint, write_checkpoint

TOLERANCE = 1e-5
RESAMPLED_TOLERANCE = 5e-3


@pytest.fixture(scope='module')
def trials(trained_run, corpus):
    """{'high': the Vox1-O trial of the highest score, 'low': of the lowest}, as (enroll path, test
    path, score); the checkpoint's threshold lies between them."""
    rows = read_scores(trained_run)
    root = Path(corpus['path_test'])
    chosen = {'high': max(rows, key=lambda row: row[3]), 'low': min(rows, key=lambda row: row[3])}
    threshold = load_checkpoint(trained_run / 'best.pt')['best']['threshold']
    assert chosen['low'][3] < threshold - 1e-3 and chosen['high'][3] > threshold + 1e-3
    return {name: (root / enroll, root / test, score) for name, (_, enroll, test, score) in chosen.items()}


def verify(path_log, checkpoint, enroll, test, *extra):
    """(the run folder, results.json) of mode=verify."""
    return run_mode(path_log, 'mode=verify', f'checkpoint={checkpoint}', f'enroll={enroll}', f'test={test}', *extra)


@pytest.fixture(scope='module')
def decided(trained_run, trials, tmp_path_factory):
    """{'high' / 'low': (run folder, results)} of verify at the checkpoint's own threshold."""
    root = tmp_path_factory.mktemp('verify')
    return {name: verify(root, trained_run / 'best.pt', *trial[:2]) for name, trial in trials.items()}


@pytest.mark.parametrize('name, decision, verdict', [('high', 'accept', 'same'), ('low', 'reject', 'different')])
def test_a_pair_scores_as_in_vox1_o_and_is_decided_at_the_checkpoint_threshold(
    trained_run, trials, decided, name, decision, verdict
):
    folder, results = decided[name]
    best = load_checkpoint(trained_run / 'best.pt')['best']
    assert results['score'] == pytest.approx(trials[name][2], abs=TOLERANCE)
    assert results['threshold'] == best['threshold'] and results['decision'] == decision
    assert results['threshold_source'].startswith(f'EER point of Vox1-O at epoch {best["epoch"]}')
    assert f'{decision}, {verdict} speaker' in (folder / 'log.txt').read_text()


@pytest.mark.parametrize(
    'name, offset, decision',
    [('high', 1e-4, 'reject'), ('high', 0.0, 'accept'), ('low', -1e-4, 'accept')],
    ids=['above the score', 'at the score', 'below the score'],
)
def test_threshold_x_decides_instead_of_the_checkpoint(trained_run, trials, decided, tmp_path, name, offset, decision):
    score = decided[name][1]['score']
    threshold = score + offset
    _, results = verify(tmp_path, trained_run / 'best.pt', *trials[name][:2], f'threshold={threshold!r}')
    assert results['score'] == score  # the same pair gives the same bits
    assert (results['threshold'], results['threshold_source'], results['decision']) == (
        threshold,
        'threshold given',
        decision,
    )


def test_a_checkpoint_without_its_own_threshold_scores_without_deciding(trained_run, trials, decided, tmp_path):
    """A last.pt of an epoch after the best one carries the best epoch's threshold, not its own."""
    state = load_checkpoint(trained_run / 'best.pt')
    write_checkpoint(str(tmp_path / 'last.pt'), dict(state, epoch=state['epoch'] + 1))
    folder, results = verify(tmp_path, tmp_path / 'last.pt', *trials['high'][:2])
    assert results['score'] == decided['high'][1]['score']
    assert results['threshold'] is None and results['decision'] is None
    assert 'no decision: the checkpoint holds the weights of epoch' in (folder / 'log.txt').read_text()


def read(path):
    return sf.read(path, dtype='float32')[0]  # (L,) or (L, C)


def write(path, wave, rate):
    sf.write(path, wave.astype(np.float32), rate, subtype='FLOAT')


def test_converted_files_score_as_their_channels_mean_resampled_by_scipy(trained_run, trials, tmp_path):
    """enroll: an 8 kHz stereo copy (the 8 kHz wave plus and minus noise), test: a 44.1 kHz copy;
    the reference: the same files mixed down and resampled here as data.audio says (the channels'
    mean, scipy's resample_poly), written at 16 kHz mono. Either channel alone, another resampler or
    none moves the score by 1e-3 or more."""
    enroll, test, _ = trials['high']
    low = resample_poly(read(enroll), 1, 2)  # (L / 2,)
    noise = np.random.default_rng(0).normal(0, 0.02, len(low))
    write(tmp_path / 'enroll_8k_stereo.wav', np.stack([low + noise, low - noise], axis=1), 8_000)  # (L / 2, 2)
    write(tmp_path / 'test_44k.wav', resample_poly(read(test), 441, 160), 44_100)
    mixed = read(tmp_path / 'enroll_8k_stereo.wav').mean(axis=1)  # (L / 2,)
    write(tmp_path / 'enroll_ref.wav', resample_poly(mixed, 2, 1), 16_000)
    write(tmp_path / 'test_ref.wav', resample_poly(read(tmp_path / 'test_44k.wav'), 160, 441), 16_000)

    checkpoint = trained_run / 'best.pt'
    folder, results = verify(tmp_path, checkpoint, tmp_path / 'enroll_8k_stereo.wav', tmp_path / 'test_44k.wav')
    reference, expected = verify(tmp_path, checkpoint, tmp_path / 'enroll_ref.wav', tmp_path / 'test_ref.wav')
    assert results['score'] == pytest.approx(expected['score'], abs=1e-6)
    log = (folder / 'log.txt').read_text()
    assert log.count('enroll: 1 file at 8000 Hz is resampled to 16 kHz') == 1
    assert log.count('enroll: 1 file of 2 channels is mixed down to mono') == 1
    assert log.count('test: 1 file at 44100 Hz is resampled to 16 kHz') == 1 and log.count('test: 1 file') == 1
    assert 'resampled' not in (reference / 'log.txt').read_text()


def test_a_44_1_khz_copy_scores_close_to_the_original(trained_run, trials, tmp_path):
    """Up and down again, a 16 kHz wave comes back within 2e-3 (the filters' edges): the score moves
    by about 2e-3, while the copy read as if at 16 kHz moves it by 1.3e-2."""
    enroll, test, score = trials['high']
    write(tmp_path / 'test_44k.wav', resample_poly(read(test), 441, 160), 44_100)
    _, results = verify(tmp_path, trained_run / 'best.pt', enroll, tmp_path / 'test_44k.wav')
    assert results['score'] == pytest.approx(score, abs=RESAMPLED_TOLERANCE)


def bad_file(folder, case):
    """(the file, what main says of it after the argument's name)."""
    path = folder / f'{case}.wav'
    if case == 'missing':
        return path, f'audio file not found: {path}'
    if case == 'no samples':
        sf.write(path, np.zeros(0, np.float32), 16_000)
        return path, f'{path} holds no samples'
    if case == 'too short':
        sf.write(path, np.full(500, 0.1, np.float32), 16_000)
        return path, f'{path} is shorter than 720 samples at 16 kHz, too short to embed'
    path.write_bytes(b'')  # not even a header
    return path, f"cannot read audio file {path}: Error opening '{path}': Format not recognised."


@pytest.mark.parametrize(
    'side, case',
    [('enroll', 'missing'), ('test', 'missing'), ('test', 'no samples'), ('test', 'too short'), ('enroll', 'empty')],
)
def test_a_file_that_cannot_be_embedded_gives_one_line_naming_its_argument(trained_run, trials, tmp_path, side, case):
    path, why = bad_file(tmp_path, case)
    files = {'enroll': trials['high'][0], 'test': trials['high'][1], side: path}
    argv = [f'{key}={value}' for key, value in files.items()] + [f'path_log={tmp_path}']
    assert user_error('mode=verify', f'checkpoint={trained_run / "best.pt"}', *argv) == f'{side}: {why}'
    assert not (tmp_path / 'OS-KDFT').exists()  # refused before a run folder is made


@pytest.mark.parametrize('case', ['plain dict', 'text file', 'missing'])
def test_a_checkpoint_that_is_not_a_runs_gives_one_line_naming_it(trials, tmp_path, case):
    checkpoint, line = checkpoints_not_ours(tmp_path)[case]
    enroll, test, _ = trials['high']
    argv = ['mode=verify', f'checkpoint={checkpoint}', f'enroll={enroll}', f'test={test}', f'path_log={tmp_path}']
    assert user_error(*argv) == line
    assert not (tmp_path / 'OS-KDFT').exists()  # refused before a run folder is made


def test_missing_arguments_give_one_line_naming_them(trained_run, trials, tmp_path):
    enroll, test, _ = trials['high']
    checkpoint, path_log = f'checkpoint={trained_run / "best.pt"}', f'path_log={tmp_path}'
    assert user_error('mode=verify', checkpoint, f'test={test}', path_log) == (
        'enroll is not set: mode=verify needs enroll=FILE and test=FILE'
    )
    assert user_error('mode=verify', checkpoint, f'enroll={enroll}', path_log) == (
        'test is not set: mode=verify needs enroll=FILE and test=FILE'
    )
    assert user_error('mode=verify', f'enroll={enroll}', f'test={test}', path_log) == (
        'checkpoint is not set: mode=verify needs the last.pt / best.pt of a run'
    )
    assert user_error('mode=verify', checkpoint, f'enroll={enroll}', f'test={test}', 'threshold=high', path_log) == (
        "threshold='high': expected a number, the score from which to accept"
    )
    assert not (tmp_path / 'OS-KDFT').exists()
