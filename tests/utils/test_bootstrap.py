"""The paired bootstrap against a case whose bootstrap distribution is a binomial.

One target trial (score 0.5) and N = 50 non-targets, of which the first A score 0.9 and the rest 0:
the target always comes back (the resamples keep each kind's count), and the EER is the share of
the resample's non-targets that score 0.9 (the ROC rises from (c / N, 0) to (c / N, 1) and crosses
1 - fpr there). A system whose first A + B non-targets score 0.9 differs from it by 100 x c_B / N %,
c_B the resampled non-targets among those B: Binomial(N, B / N) when the two systems see the same
resample; an unpaired bootstrap would add the spread of the shared A trials twice.
"""

import numpy as np
import pytest
from scipy.stats import binom

from utils.bootstrap import interval, paired_bootstrap, speaker_subset_eers, stratified_resample
from utils.metrics import compute_eer

N, A, B = 50, 10, 10
RESAMPLES = 10_000


def system(high):
    """Scores of the trials [target, N non-targets]: the first `high` non-targets score 0.9."""
    return np.r_[0.5, np.where(np.arange(N) < high, 0.9, 0.0)]


LABELS = np.r_[1, np.zeros(N, dtype=int)]


def test_the_eer_of_the_case_is_the_share_of_high_non_targets():
    assert compute_eer(system(A), LABELS) == pytest.approx(100.0 * A / N)
    assert compute_eer(system(A + B), LABELS) == pytest.approx(100.0 * (A + B) / N)


def test_resamples_keep_the_count_of_targets_and_non_targets():
    labels = np.r_[np.ones(7, dtype=int), np.zeros(30, dtype=int)]
    index = stratified_resample(labels, np.random.default_rng(0))
    assert index.shape == (37,) and (labels[index] == 1).sum() == 7
    assert len(set(index[labels[index] == 0])) < 30  # drawn with replacement


def test_paired_difference_interval_is_the_binomial_interval():
    values = paired_bootstrap({'ref': [system(A)], 'x': [system(A + B)]}, LABELS, RESAMPLES, seed=3)
    difference = values['x'] - values['ref']
    low, high = binom.ppf([0.025, 0.975], N, B / N) * 100.0 / N  # [5, 16] of 50 trials
    assert interval(difference) == pytest.approx((low, high))
    assert difference.mean() == pytest.approx(100.0 * B / N, abs=0.2)
    assert difference.std() == pytest.approx(100.0 * np.sqrt(N * (B / N) * (1 - B / N)) / N, rel=0.03)


def test_a_system_of_several_seeds_is_their_mean_on_each_resample():
    values = paired_bootstrap({'ref': [system(A)], 'x': [system(A), system(A + B)]}, LABELS, RESAMPLES, seed=3)
    low, high = binom.ppf([0.025, 0.975], N, B / N) * 100.0 / N / 2  # half the difference of one seed
    assert interval(values['x'] - values['ref']) == pytest.approx((low, high))


def test_scores_of_other_trials_are_refused():
    with pytest.raises(ValueError, match='x: every score array must hold the 51 trials'):
        paired_bootstrap({'x': [np.zeros(50)]}, LABELS, 1)


def four_speaker_list():
    """Speakers a, b, c, d: one target trial each (score 1.0); a non-target trial for every pair,
    scoring -1.0 but for the pair (a, b), whose 2.0 is above every target."""
    speakers = 'abcd'
    trials = [(1, f'{s}/v1/1.wav', f'{s}/v2/1.wav', 1.0) for s in speakers]
    trials += [
        (0, f'{x}/v1/1.wav', f'{y}/v1/1.wav', 2.0 if {x, y} == {'a', 'b'} else -1.0)
        for i, x in enumerate(speakers)
        for y in speakers[i + 1 :]
    ]
    labels, enroll, test, scores = zip(*trials)
    return np.array(scores), np.array(labels), list(enroll), list(test)


def test_speaker_subsets_keep_the_trials_among_the_speakers_drawn():
    """Pairs of speakers: only {a, b} keeps the non-target above its targets (EER 100 %: at any
    threshold either both targets at 1.0 are missed or the non-target at 2.0 passes); any other pair
    is separated (0 %). A subset that also kept a trial with one speaker drawn would put (a, b)'s
    error into {a, c}, {a, d}, {b, c}, {b, d}; a draw with replacement would leave {a, a} without
    non-targets. The six pairs come equally often."""
    scores, labels, enroll, test = four_speaker_list()
    ab = np.array([0, 1, 4])  # the targets of a and b, their non-target
    assert compute_eer(scores[ab], labels[ab]) == pytest.approx(100.0)
    eers, speakers = speaker_subset_eers(scores, labels, enroll, test, size=2, draws=6000, seed=1)
    assert speakers == 4 and len(eers) == 6000
    assert set(np.round(eers, 6)) == {0.0, 100.0}
    share = (eers == 100.0).mean()
    assert binom.ppf(0.0005, 6000, 1 / 6) / 6000 <= share <= binom.ppf(0.9995, 6000, 1 / 6) / 6000


def test_a_subset_of_every_speaker_is_the_whole_list():
    scores, labels, enroll, test = four_speaker_list()
    eers, _ = speaker_subset_eers(scores, labels, enroll, test, size=4, draws=3)
    assert eers == pytest.approx([compute_eer(scores, labels)] * 3)
    with pytest.raises(ValueError, match='a subset of 5 speakers: expected 2 to 4'):
        speaker_subset_eers(scores, labels, enroll, test, size=5)
