import warnings
from fractions import Fraction

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import roc_curve

from utils.metrics import compute_eer, compute_metrics, compute_min_dcf, det_curve, eer_threshold


def reference_eer(scores, labels):
    """The original definition: sklearn's ROC, linearly interpolated, solved by brentq (a fraction)."""
    fpr, tpr, _ = roc_curve(labels, scores, pos_label=1)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # interp1d divides by zero on vertical ROC segments
        return brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)


def brute_force_min_dcf(scores, labels, p_target, c_miss=1.0, c_fa=1.0):
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels)
    best = np.inf
    for threshold in np.r_[np.unique(scores), np.inf]:
        accept = scores >= threshold
        p_miss = np.mean(~accept[labels == 1])
        p_fa = np.mean(accept[labels == 0])
        best = min(best, c_miss * p_miss * p_target + c_fa * p_fa * (1 - p_target))
    return best / min(c_miss * p_target, c_fa * (1 - p_target))


def random_trials(seed, size, target_rate, decimals=None):
    rng = np.random.default_rng(seed)
    labels = (rng.random(size) < target_rate).astype(int)
    labels[:2] = (1, 0)
    scores = rng.normal(size=size) + 1.5 * labels
    if decimals is not None:
        scores = np.round(scores, decimals)
    return scores, labels


@pytest.mark.parametrize('size', [7, 100, 2_000, 50_000])
@pytest.mark.parametrize('target_rate', [0.5, 0.1, 0.01])
def test_eer_equals_sklearn_brentq_on_random_scores(size, target_rate):
    scores, labels = random_trials(size, size, target_rate)
    assert abs(compute_eer(scores, labels) / 100 - reference_eer(scores, labels)) < 1e-9


@pytest.mark.parametrize('decimals', [0, 1, 2])
@pytest.mark.parametrize('target_rate', [0.5, 0.05])
def test_eer_equals_sklearn_brentq_on_tied_scores(decimals, target_rate):
    scores, labels = random_trials(decimals, 5_000, target_rate, decimals)
    assert len(np.unique(scores)) < 1_000
    assert abs(compute_eer(scores, labels) / 100 - reference_eer(scores, labels)) < 1e-9


def test_eer_by_hand():
    assert compute_eer([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 0.0
    assert compute_eer([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 100.0
    # ROC points (0, 0) (0, 1/2) (1/2, 1/2) (1/2, 1) (1, 1): tpr = 1 - fpr on the vertical
    # segment at fpr = 1/2, so EER = 50 %
    assert compute_eer([4, 3, 2, 1], [1, 0, 1, 0]) == 50.0
    # ROC points (0, 0) (0, 1/2) (1/3, 1/2) (2/3, 1/2) (2/3, 1) (1, 1): crossing at fpr = 1/2
    assert compute_eer([5, 4, 3, 2, 1], [1, 0, 0, 1, 0]) == pytest.approx(50.0, abs=1e-12)
    # one tied group holding a target and a non-target is one diagonal ROC step:
    # (0, 0) -> (1/2, 1/2) crosses 1 - fpr at 1/2
    assert compute_eer([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(50.0, abs=1e-12)
    # (0, 0) (1/3, 0) (1/3, 1) (1, 1): the vertical segment at fpr = 1/3 crosses 1 - fpr
    assert compute_eer([3, 2, 1, 0], [0, 1, 0, 0]) == pytest.approx(100 / 3, abs=1e-12)


def test_eer_slanted_crossing_solved_exactly():
    # ROC (0, 0) (1/3, 0) (1, 1), the last step one tied group: tpr = 3/2 (fpr - 1/3) meets 1 - fpr at 3/5
    assert compute_eer([2, 1, 1, 1], [0, 0, 1, 0]) == pytest.approx(60.0, abs=1e-12)
    assert reference_eer([2, 1, 1, 1], [0, 0, 1, 0]) == pytest.approx(0.6, abs=1e-9)


@pytest.mark.parametrize('p_target', [0.05, 0.01, 0.5])
@pytest.mark.parametrize('decimals', [None, 1])
def test_min_dcf_equals_brute_force(p_target, decimals):
    scores, labels = random_trials(3, 1_500, 0.2, decimals)
    assert compute_min_dcf(scores, labels, p_target) == pytest.approx(
        brute_force_min_dcf(scores, labels, p_target), abs=1e-12
    )
    assert compute_min_dcf(scores, labels, p_target, c_miss=10, c_fa=1) == pytest.approx(
        brute_force_min_dcf(scores, labels, p_target, c_miss=10, c_fa=1), abs=1e-12
    )


def test_min_dcf_by_hand():
    assert compute_min_dcf([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0], 0.01) == 0.0
    # inverted scores: the best is a trivial system (accept-all or reject-all), normalised cost 1
    assert compute_min_dcf([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0], 0.01) == 1.0
    # accept only the top score: P_miss 1/2, P_fa 0 -> 0.5 x 0.5 / 0.5 = 0.5
    assert compute_min_dcf([4, 3, 2, 1], [1, 0, 1, 0], 0.5) == 0.5


def test_compute_metrics_equals_the_single_functions_and_takes_lists():
    scores, labels = random_trials(11, 3_000, 0.3, 1)
    metrics = compute_metrics(list(scores), list(labels))
    assert set(metrics) == {'eer', 'min_dcf_0.05', 'min_dcf_0.01'}
    assert metrics['eer'] == compute_eer(scores, labels)
    assert metrics['min_dcf_0.05'] == compute_min_dcf(scores, labels, 0.05)
    assert metrics['min_dcf_0.01'] == compute_min_dcf(scores, labels, 0.01)
    assert compute_eer(list(scores), [bool(x) for x in labels]) == metrics['eer']


def test_det_curve_ends_at_reject_all_and_accept_all():
    p_fa, p_miss = det_curve([4, 3, 3, 1], [1, 0, 1, 0])
    np.testing.assert_array_equal(p_fa, [0, 0, 0.5, 1])
    np.testing.assert_array_equal(p_miss, [1, 0.5, 0, 0])


def test_bad_input_is_one_clear_error():
    with pytest.raises(ValueError, match='non-target'):
        compute_eer([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match='3 scores but 2 labels'):
        compute_eer([0.1, 0.2, 0.3], [1, 0])
    with pytest.raises(ValueError, match='NaN'):
        compute_eer([0.1, float('nan')], [1, 0])


def brute_force_eer_threshold(scores, labels):
    """Every distinct score tried as 'accept when score >= t', its error rates as exact fractions:
    the smallest larger rate, then the smallest sum, then the lowest t."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels)
    best = None
    for threshold in np.unique(scores):
        false_accept = Fraction(int(np.sum(scores[labels == 0] >= threshold)), int(np.sum(labels == 0)))
        miss = Fraction(int(np.sum(scores[labels == 1] < threshold)), int(np.sum(labels == 1)))
        key = (max(false_accept, miss), false_accept + miss)
        if best is None or key < best[0]:
            best = key, threshold
    return best[1]


def error_rates(scores, labels, threshold):
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels)
    return np.mean(scores[labels == 0] >= threshold), np.mean(scores[labels == 1] < threshold)


@pytest.mark.parametrize(
    'size, target_rate, decimals',
    [(7, 0.5, None), (100, 0.1, None), (2_000, 0.5, None), (3_000, 0.05, None), (2_000, 0.5, 1), (5_000, 0.1, 2)],
)
def test_eer_threshold_equals_the_brute_force_one_and_brackets_the_eer(size, target_rate, decimals):
    scores, labels = random_trials(size + 1, size, target_rate, decimals)
    threshold = eer_threshold(scores, labels)
    assert threshold == brute_force_eer_threshold(scores, labels)
    false_accept, miss = error_rates(scores, labels, threshold)
    eer = compute_eer(scores, labels) / 100
    assert min(false_accept, miss) - 1e-12 <= eer <= max(false_accept, miss) + 1e-12


def test_eer_threshold_by_hand():
    # targets 0.35, 0.8; non-targets 0.1, 0.4. t = 0.35: 1/2 false accepts, no miss; t = 0.4: 1/2 and
    # 1/2; t = 0.8: none and 1/2; t = 0.1: 2/2 and none. The larger rate is 1/2 at 0.35, 0.4 and 0.8,
    # the sum 1/2 at 0.35 and 0.8: the lower, 0.35
    assert eer_threshold([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.35
    # separable: at 0.8 nothing is wrong
    assert eer_threshold([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 0.8
    with pytest.raises(ValueError, match='need target'):
        eer_threshold([0.1, 0.2], [1, 1])
