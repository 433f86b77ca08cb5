"""Speaker-verification metrics: EER and normalised minDCF, exact and vectorised.

All of them read the same ROC, from reject-all (0, 0) to accept-all (1, 1), tied scores one step,
built from the target and the non-target scores sorted apart (see _roc).
"""

import numpy as np


def _checked(scores, labels):
    """(scores float64 (M,), targets bool (M,), number of targets, of non-targets) of a valid trial list."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    targets = np.asarray(labels).ravel() == 1
    if scores.shape != targets.shape:
        raise ValueError(f'{scores.size} scores but {targets.size} labels')
    if not np.isfinite(scores).all():
        raise ValueError(f'{np.count_nonzero(~np.isfinite(scores))} scores are NaN or infinite')
    num_target = int(targets.sum())
    num_nontarget = targets.size - num_target
    if num_target == 0 or num_nontarget == 0:
        raise ValueError(
            f'EER / minDCF need target (1) and non-target (0) trials; got {num_target} '
            f'targets and {num_nontarget} non-targets'
        )
    return scores, targets, num_target, num_nontarget


def _roc(scores, labels):
    """(fpr, tpr) at the corners of the ROC of 'accept when score >= t', from (0, 0) to (1, 1)."""
    scores, targets, num_target, num_nontarget = _checked(scores, labels)
    # The ROC moves up only at target scores: between two of them it runs flat (only non-targets
    # are accepted), and points inside a flat run lie on the line through its ends, move no EER and
    # never lower the cost. So the ROC is exact with two points per distinct target score v:
    # everything above v accepted, then everything at or above v (ties in one step). Their counts
    # come from the two scores sorted apart; no sort or merge of all the trials together.
    target = np.sort(np.compress(targets, scores))  # (T,) ascending
    nontarget = np.sort(np.compress(~targets, scores))  # (N,) ascending; compress: 3x a mask index
    last = np.flatnonzero(np.r_[target[1:] != target[:-1], True])  # last of each tie group
    values = target[last]  # (V,) distinct target scores
    first = np.r_[0, last[:-1] + 1]
    true_above, true_at_or_above = num_target - last - 1, num_target - first
    false_above = num_nontarget - np.searchsorted(nontarget, values, side='right')
    false_at_or_above = num_nontarget - np.searchsorted(nontarget, values, side='left')
    true_accepts = _path(true_above, true_at_or_above, num_target)
    false_accepts = _path(false_above, false_at_or_above, num_nontarget)
    moves = np.r_[True, (true_accepts[1:] != true_accepts[:-1]) | (false_accepts[1:] != false_accepts[:-1])]
    return false_accepts[moves] / num_nontarget, true_accepts[moves] / num_target


def _path(above, at_or_above, total):
    """Counts along the ROC from reject-all: 0, then per distinct target score from the highest,
    the count above it and at or above it, then total (accept-all). (2V + 2,)"""
    path = np.empty(2 * len(above) + 2, dtype=np.int64)
    path[0], path[-1] = 0, total
    path[1:-1:2], path[2:-1:2] = above[::-1], at_or_above[::-1]
    return path


def _eer(fpr, tpr):
    """Where the piecewise-linear ROC (fpr on x) meets tpr = 1 - fpr, as a fraction."""
    # 1 - fpr - tpr falls strictly from 1 at (0, 0) to -1 at (1, 1): one crossing
    gap = 1.0 - fpr - tpr
    i = int(np.argmax(gap <= 0))
    if gap[i] == 0 or fpr[i] == fpr[i - 1]:
        return float(fpr[i])
    slope = (tpr[i] - tpr[i - 1]) / (fpr[i] - fpr[i - 1])
    return float((1.0 - tpr[i - 1] + slope * fpr[i - 1]) / (1.0 + slope))


def _min_dcf(fpr, tpr, p_target, c_miss, c_fa):
    """Minimum over every threshold of the detection cost, normalised by the best trivial system."""
    cost = c_miss * (1.0 - tpr) * p_target + c_fa * fpr * (1.0 - p_target)
    return float(cost.min() / min(c_miss * p_target, c_fa * (1.0 - p_target)))


def compute_eer(scores, labels):
    """Equal error rate in percent; labels 1 = target, 0 = non-target."""
    return 100.0 * _eer(*_roc(scores, labels))


def compute_min_dcf(scores, labels, p_target, c_miss=1.0, c_fa=1.0):
    """Normalised minimum detection cost at prior p_target."""
    return _min_dcf(*_roc(scores, labels), p_target, c_miss, c_fa)


def compute_metrics(scores, labels, p_targets=(0.05, 0.01)):
    """{'eer': %, 'min_dcf_<p>': x for each p} from one sort (C_miss = C_fa = 1)."""
    fpr, tpr = _roc(scores, labels)
    metrics = {'eer': 100.0 * _eer(fpr, tpr)}
    for p_target in p_targets:
        metrics[f'min_dcf_{p_target}'] = _min_dcf(fpr, tpr, p_target, 1.0, 1.0)
    return metrics


def eer_threshold(scores, labels):
    """The decision threshold at the EER point: of the thresholds t that the scores offer ('accept
    when score >= t'), the one whose larger error rate (false accepts among the non-targets, misses
    among the targets) is the smallest; a tie goes to the smaller sum of the two, then to the lower
    threshold. Its two error rates lie either side of the EER (they are an end of the ROC segment
    where the EER is interpolated), so a verification at this threshold errs about as often as the EER."""
    scores, targets, num_target, num_nontarget = _checked(scores, labels)
    candidates = np.unique(scores)  # (K,) ascending
    false_accepts = num_nontarget - np.searchsorted(np.sort(scores[~targets]), candidates, side='left')
    misses = np.searchsorted(np.sort(scores[targets]), candidates, side='left')
    # both rates over one denominator, num_target x num_nontarget, so that ties compare exactly
    fa, miss = false_accepts * num_target, misses * num_nontarget  # (K,) int64 each
    return float(candidates[np.lexsort((fa + miss, np.maximum(fa, miss)))[0]])


def det_curve(scores, labels):
    """(false-alarm rate, miss rate) at every threshold, from reject-all to accept-all."""
    fpr, tpr = _roc(scores, labels)
    return fpr, 1.0 - tpr
