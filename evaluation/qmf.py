"""Score calibration with quality measures (QMF): a logistic regression from a trial's score and the
quality of its two utterances to a log-likelihood ratio, fitted on trials of training speakers.

Features of a trial (FEATURES), each pair ordered (smaller, larger) so that enrollment and test play
the same part, as WeSpeaker's gather_calibration_factors orders them (wespeaker/bin/score_calibration.py):
the score (AS-normalised when the run uses AS-norm), the log of both durations in seconds (capped at
MAX_SECONDS, WeSpeaker's --max_dur 20), and both utterances' mean top_k imposter scores against the
cohort of training speakers (AS-norm's mean; WeSpeaker takes it from score_norm.py with top_n 300).

The fitted logit is the posterior log-odds under the calibration list's own share of targets; less
that prior's log-odds it is a log-likelihood ratio, whose Bayes decision at a target prior p is
LLR >= log((1 - p) / p) (llr_threshold).

A calibration (the dict fit_calibration returns and a checkpoint carries under 'qmf') holds all it
takes to calibrate new trials: the fitted weights, the cohort and the top_k of each statistic.
"""

import numpy as np
import torch

from evaluation.asnorm import apply_asnorm, utterance_stats

FEATURES = ('score', 'log_seconds_min', 'log_seconds_max', 'imposter_mean_min', 'imposter_mean_max')
MAX_SECONDS = 20.0  # durations above it count as this long (WeSpeaker: --max_dur 20)
MIN_SECONDS = 0.01  # a floor for the log of a duration (no utterance that embeds is this short)


def calibration_trials(labels, num_trials: int, seed: int):
    """A seeded, balanced calibration list over the utterances of labels (N,) (speaker per utterance):
    num_trials // 2 target trials (two different utterances of a speaker, the speaker drawn uniformly
    among those with two or more), each paired with a non-target trial of the same enrollment
    utterance against an utterance of another speaker drawn uniformly (WeSpeaker's
    generate_calibration_trial.py pairs them so too). (enroll (M,), test (M,), target (M,)) int64."""
    labels = np.asarray(labels)
    speakers, counts = np.unique(labels, return_counts=True)
    eligible = np.flatnonzero(counts >= 2)
    if len(speakers) < 2 or not len(eligible):
        raise ValueError(
            f'qmf: the calibration trials need two training speakers, one with two utterances or more; '
            f'path_train has {len(speakers)} speakers, {len(eligible)} with two utterances'
        )
    order = np.argsort(labels, kind='stable')  # utterances speaker by speaker
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rng = np.random.default_rng([seed, 11])
    half = num_trials // 2
    speaker = rng.choice(eligible, half)  # (half,) positions in speakers
    first = rng.integers(0, counts[speaker])
    second = (first + 1 + rng.integers(0, counts[speaker] - 1)) % counts[speaker]  # another of the same speaker
    other = (speaker + 1 + rng.integers(0, len(speakers) - 1, half)) % len(speakers)  # another speaker
    imposter = rng.integers(0, counts[other])
    enroll = order[starts[speaker] + first]
    target_test, nontarget_test = order[starts[speaker] + second], order[starts[other] + imposter]
    return (
        np.concatenate([enroll, enroll]),
        np.concatenate([target_test, nontarget_test]),
        np.concatenate([np.ones(half, np.int64), np.zeros(half, np.int64)]),
    )


def utterance_quality(calibration, full, seg_mean, seconds, own=None):
    """What a trial's features need of each utterance, from its vectors full (N, D), seg_mean (N, D)
    and its duration in seconds (N,): {'log_seconds' (N,), 'imposter_mean' (N,), 'asnorm': (mean, std)
    (N,) each, or None}. own (N,): each utterance's own row in the cohort, left out of its statistics
    (the calibration utterances are training speakers', whose own cohort entry a test utterance never
    meets); None: none left out."""
    cohort = (calibration['cohort_full'], calibration['cohort_seg'])
    seconds = np.asarray(seconds, dtype=np.float64)
    quality = {
        'log_seconds': np.log(np.clip(seconds, MIN_SECONDS, calibration['max_seconds'])),
        'imposter_mean': utterance_stats(full, seg_mean, *cohort, calibration['top_k'], exclude=own)[0],
        'asnorm': None,
    }
    if calibration['asnorm_top_k']:
        quality['asnorm'] = utterance_stats(full, seg_mean, *cohort, calibration['asnorm_top_k'], exclude=own)
    return quality


def ordered(values, enroll_idx, test_idx):
    """(M, 2): each trial's two values, the smaller first."""
    return np.sort(np.stack([values[enroll_idx], values[test_idx]], axis=1), axis=1)


def quality_features(scores, quality, enroll_idx, test_idx):
    """The features (M, len(FEATURES)) of trials with raw scores (M,) (AS-normalised here when the
    quality holds AS-norm statistics) between utterances of utterance_quality."""
    scores = np.asarray(scores, dtype=np.float64)
    if quality['asnorm'] is not None:
        scores = apply_asnorm(scores, enroll_idx, test_idx, *quality['asnorm'])
    return np.column_stack(
        [
            scores,
            ordered(quality['log_seconds'], enroll_idx, test_idx),
            ordered(quality['imposter_mean'], enroll_idx, test_idx),
        ]
    )


def fit_qmf(features, labels):
    """The logistic regression of labels (M,) (1 = target) on features (M, F), unregularised (C = inf:
    WeSpeaker minimises Cllr with no penalty): {'weights' [F], 'intercept', 'prior_log_odds' (the
    list's log(targets / non-targets), taken off the logit to give an LLR), 'trials'}."""
    from sklearn.linear_model import LogisticRegression  # here: importing scikit-learn takes 0.5 s a process

    labels = np.asarray(labels)
    # lbfgs to a gradient of 1e-10 (sklearn's default tol 1e-4 leaves the weights ~1e-4 off the optimum)
    regression = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(features, labels)
    targets = int(np.count_nonzero(labels == 1))
    return {
        'weights': regression.coef_[0].tolist(),
        'intercept': float(regression.intercept_[0]),
        'prior_log_odds': float(np.log(targets / (len(labels) - targets))),
        'trials': len(labels),
    }


def qmf_llr(calibration, features):
    """Calibrated scores (M,), log-likelihood ratios: features (M, F) . weights + intercept - prior log-odds."""
    weights = np.asarray(calibration['weights'], dtype=np.float64)
    return np.asarray(features, dtype=np.float64) @ weights + calibration['intercept'] - calibration['prior_log_odds']


def trial_llrs(calibration, scores, quality, enroll_idx, test_idx):
    """LLRs (M,) of trials with raw scores (M,) between utterances of utterance_quality."""
    return qmf_llr(calibration, quality_features(scores, quality, enroll_idx, test_idx))


def llr_threshold(p_target: float) -> float:
    """The Bayes decision threshold on an LLR at target prior p_target (C_miss = C_fa = 1): log((1 - p) / p)."""
    return float(np.log((1.0 - p_target) / p_target))


def posterior(llr, p_target: float):
    """P(same speaker | trial) at target prior p_target: sigmoid(LLR + logit(p_target))."""
    return 1.0 / (1.0 + np.exp(-(np.asarray(llr, dtype=np.float64) - llr_threshold(p_target))))


def actual_dcf(llrs, labels, p_target: float) -> float:
    """Normalised detection cost of deciding at llr_threshold(p_target) (C_miss = C_fa = 1): what the
    calibration costs beside the minDCF at the same prior."""
    llrs, targets = np.asarray(llrs, dtype=np.float64), np.asarray(labels) == 1
    accept = llrs >= llr_threshold(p_target)
    p_miss, p_fa = np.mean(~accept[targets]), np.mean(accept[~targets])
    return float((p_target * p_miss + (1.0 - p_target) * p_fa) / min(p_target, 1.0 - p_target))


def cllr(llrs, labels) -> float:
    """Log-likelihood-ratio cost in bits (Brummer): 0 is perfect, 1 a system that always says LLR 0."""
    llrs, targets = np.asarray(llrs, dtype=np.float64), np.asarray(labels) == 1
    return float(0.5 * (np.logaddexp(0, -llrs[targets]).mean() + np.logaddexp(0, llrs[~targets]).mean()) / np.log(2))


def calibration_metrics(llrs, labels, p_targets=(0.05, 0.01)):
    """{'act_dcf_<p>' for each p, 'cllr'} of LLRs."""
    metrics = {f'act_dcf_{p}': actual_dcf(llrs, labels, p) for p in p_targets}
    return {**metrics, 'cllr': cllr(llrs, labels)}


def new_calibration(cohort, args):
    """A calibration not yet fitted: the cohort (C, D) x 2 (kept as float32 CPU tensors, what a
    checkpoint holds) and the settings its statistics use."""
    return {
        'features': list(FEATURES),
        'cohort_full': torch.as_tensor(cohort[0]).float().cpu().contiguous(),
        'cohort_seg': torch.as_tensor(cohort[1]).float().cpu().contiguous(),
        'top_k': args['qmf_top_k'],
        'asnorm_top_k': args['asnorm_top_k'],
        'max_seconds': MAX_SECONDS,
        'p_target': args['p_target'],
    }


def describe(calibration):
    """The calibration without its cohort vectors: what results.json and the log show."""
    described = {key: value for key, value in calibration.items() if key not in ('cohort_full', 'cohort_seg')}
    return {**described, 'cohort': len(calibration['cohort_full']), 'threshold': llr_threshold(calibration['p_target'])}
