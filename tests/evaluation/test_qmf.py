"""QMF score calibration: the seeded calibration trials, the quality features against brute force,
the fit (an unregularised logistic regression, as sklearn fits it) and its LLR (the logit less the
calibration list's prior log-odds), monotone in the raw score."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

from evaluation.qmf import (
    FEATURES,
    calibration_trials,
    fit_qmf,
    llr_threshold,
    posterior,
    qmf_llr,
    quality_features,
    trial_llrs,
    utterance_quality,
)


def hand_made_case():
    """Features (100, 5) and labels (30 targets, 70 non-targets: a prior log-odds of log(3 / 7)),
    overlapping so that the fit has a finite optimum."""
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(30, int), np.zeros(70, int)]
    features = rng.normal(size=(100, len(FEATURES)))
    features[:, 0] += 1.5 * labels  # the score says most
    features[:, 1] += 0.3 * labels
    return features, labels


def test_the_fit_is_sklearns_unregularised_logistic_regression_and_the_llr_removes_the_prior():
    features, labels = hand_made_case()
    fitted = fit_qmf(features, labels)
    reference = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(features, labels)
    np.testing.assert_allclose(fitted['weights'], reference.coef_[0], rtol=1e-7)
    assert fitted['intercept'] == pytest.approx(reference.intercept_[0], rel=1e-7)
    # unregularised: the log-loss gradient vanishes at the fit (sklearn's default C=1 penalty leaves ~1e-1)
    logit = features @ np.array(fitted['weights']) + fitted['intercept']
    residual = labels - 1 / (1 + np.exp(-logit))  # (M,)
    np.testing.assert_allclose(np.r_[features.T @ residual, residual.sum()], 0, atol=1e-6)
    assert fitted['prior_log_odds'] == pytest.approx(np.log(30 / 70))
    np.testing.assert_allclose(qmf_llr(fitted, features), logit - np.log(30 / 70), rtol=1e-12)


def test_the_llr_threshold_and_posterior_are_bayes_at_p_target():
    assert llr_threshold(0.01) == pytest.approx(np.log(99))
    assert posterior(llr_threshold(0.05), 0.05) == pytest.approx(0.5)
    # P(target | llr) = p e^llr / (p e^llr + 1 - p)
    assert posterior(2.0, 0.2) == pytest.approx(0.2 * np.exp(2) / (0.2 * np.exp(2) + 0.8))


def test_calibration_trials_are_seeded_balanced_targets_of_one_speaker_and_non_targets_of_two():
    labels = np.repeat(np.arange(5), [1, 2, 3, 4, 6])  # speaker 0 has one utterance: never a target's
    enroll, test, target = calibration_trials(labels, 400, seed=3)
    assert len(enroll) == 400 and target.sum() == 200
    same = labels[enroll] == labels[test]
    assert (same == (target == 1)).all() and (enroll != test).all()
    assert 0 not in labels[enroll[target == 1]]
    assert len(np.unique(labels[test[target == 0]])) == 5  # every speaker an imposter somewhere
    again = calibration_trials(labels, 400, seed=3)
    assert all((a == b).all() for a, b in zip((enroll, test, target), again))
    assert not (calibration_trials(labels, 400, seed=4)[1] == test).all()
    with pytest.raises(ValueError, match='qmf: the calibration trials need two training speakers'):
        calibration_trials(np.zeros(4, int), 10, seed=1)


def calibration_of(cohort, top_k=2, asnorm_top_k=0, max_seconds=20.0):
    return {
        'cohort_full': cohort[0],
        'cohort_seg': cohort[1],
        'top_k': top_k,
        'asnorm_top_k': asnorm_top_k,
        'max_seconds': max_seconds,
    }


def test_the_features_are_the_score_and_each_quality_ordered_smaller_first_by_brute_force():
    torch.manual_seed(0)
    full = F.normalize(torch.randn(4, 6), dim=-1)
    seg = F.normalize(torch.randn(4, 6), dim=-1) * 0.7
    cohort = (F.normalize(torch.randn(5, 6), dim=-1), torch.randn(5, 6) * 0.3)
    seconds = np.array([3.0, 45.0, 7.5, 12.0])
    own = np.array([0, 4, 2, 2])
    quality = utterance_quality(calibration_of(cohort, top_k=2), full, seg, seconds, own=own)
    enroll_idx, test_idx = np.array([1, 0, 2]), np.array([0, 3, 3])
    scores = np.array([0.3, -0.1, 0.8])
    features = quality_features(scores, quality, enroll_idx, test_idx)

    vectors, cohort_vectors = torch.cat([full, seg], 1).double().numpy(), torch.cat(cohort, 1).double().numpy()
    imposter = []
    for u in range(4):  # the 2 highest scores against the cohort, the utterance's own speaker left out
        others = [0.5 * vectors[u] @ cohort_vectors[c] for c in range(5) if c != own[u]]
        imposter.append(np.mean(sorted(others, reverse=True)[:2]))
    log_seconds = np.log([3.0, 20.0, 7.5, 12.0])  # 45 s counts as 20 s
    for row, (e, t) in enumerate(zip(enroll_idx, test_idx)):
        expected = [
            scores[row],
            min(log_seconds[e], log_seconds[t]),
            max(log_seconds[e], log_seconds[t]),
            min(imposter[e], imposter[t]),
            max(imposter[e], imposter[t]),
        ]
        np.testing.assert_allclose(features[row], expected, rtol=1e-5)
    swapped = quality_features(scores, quality, test_idx, enroll_idx)
    np.testing.assert_array_equal(swapped, features)  # enrollment and test play the same part


def test_calibrated_scores_rise_with_the_raw_score_at_fixed_quality():
    """The fit of a case where targets score higher, applied through AS-norm and the features: at
    fixed durations and imposter means the LLR rises with the raw score, and by the score's weight
    times the AS-norm slope."""
    torch.manual_seed(1)
    full = F.normalize(torch.randn(2, 6), dim=-1)
    seg = F.normalize(torch.randn(2, 6), dim=-1)
    cohort = (F.normalize(torch.randn(8, 6), dim=-1), torch.randn(8, 6) * 0.3)
    calibration = calibration_of(cohort, top_k=3, asnorm_top_k=4)
    features, labels = hand_made_case()
    calibration.update(fit_qmf(features, labels))
    assert calibration['weights'][0] > 0
    quality = utterance_quality(calibration, full, seg, [4.0, 9.0])
    raw = np.linspace(-1, 1, 41)
    llrs = trial_llrs(calibration, raw, quality, np.zeros(41, int), np.ones(41, int))
    assert (np.diff(llrs) > 0).all()
    mean, std = quality['asnorm']
    slope = 0.5 * (1 / std[0] + 1 / std[1])  # d asnorm / d raw
    np.testing.assert_allclose(np.diff(llrs), calibration['weights'][0] * slope * np.diff(raw), rtol=1e-9)
