"""Paired bootstrap over trials: how much a difference between systems scored on the same trial
list could move had other trials of the same kind been drawn.

Every resample draws the list's trials with replacement, the targets and the non-targets apart
(each keeps its count, so every resample has both), and the same draw serves every system: the
systems' difference is measured on the same trials each time (paired), which removes the spread
that the trials' own difficulty gives all systems alike.
"""

import numpy as np

from utils.metrics import compute_eer


def stratified_resample(labels, rng):
    """Indices (M,) of one resample of the trials: as many targets and non-targets as labels has,
    each drawn with replacement from its own kind."""
    labels = np.asarray(labels)
    parts = [np.flatnonzero(labels == kind) for kind in (1, 0)]
    return np.concatenate([rng.choice(part, size=len(part), replace=True) for part in parts])


def paired_bootstrap(systems, labels, resamples=1000, seed=0, statistic=compute_eer):
    """The bootstrap distribution of each system's statistic, over the same resamples of the trials.
    systems: {name: [scores (M,), ...]}, one score array per training seed, all of the same M trials
    (labels (M,)). A system's value on a resample is its statistic averaged over its score arrays.
    Returns {name: (resamples,)}."""
    rng = np.random.default_rng(seed)
    arrays = {name: [np.asarray(scores, dtype=np.float64) for scores in runs] for name, runs in systems.items()}
    labels = np.asarray(labels)
    for name, runs in arrays.items():
        if any(scores.shape != labels.shape for scores in runs):
            raise ValueError(f'{name}: every score array must hold the {labels.size} trials of labels')
    values = {name: np.empty(resamples) for name in arrays}
    for b in range(resamples):
        index = stratified_resample(labels, rng)
        for name, runs in arrays.items():
            values[name][b] = np.mean([statistic(scores[index], labels[index]) for scores in runs])
    return values


def interval(samples, level=0.95):
    """The central `level` interval of bootstrap samples (percentiles), (low, high)."""
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def speaker_of(path):
    """The speaker of a VoxCeleb-layout path: its first folder ('id10270/5r0dWxy17C8/00001.wav')."""
    return path.split('/', 1)[0]


def speaker_subset_eers(scores, labels, enroll, test, size, draws=400, seed=0):
    """How much a list's EER depends on which speakers it holds: the EER of the same scored trials
    on `draws` random subsets of `size` of the list's speakers (drawn without replacement), each
    keeping the trials whose two speakers were both drawn, the list the same construction gives on
    those speakers alone. enroll, test: the trials' paths (VoxCeleb layout). A subset left without
    a target or a non-target trial has no EER and is skipped. Returns (EERs (K,), speakers in the list)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    speakers = sorted({speaker_of(path) for path in (*enroll, *test)})
    if not 2 <= size <= len(speakers):
        raise ValueError(f'a subset of {size} speakers: expected 2 to {len(speakers)}, the speakers in the list')
    index = {speaker: i for i, speaker in enumerate(speakers)}
    enroll_ids = np.array([index[speaker_of(path)] for path in enroll])
    test_ids = np.array([index[speaker_of(path)] for path in test])
    rng = np.random.default_rng(seed)
    eers = []
    for _ in range(draws):
        drawn = np.zeros(len(speakers), dtype=bool)
        drawn[rng.choice(len(speakers), size=size, replace=False)] = True
        kept = drawn[enroll_ids] & drawn[test_ids]
        if 0 < labels[kept].sum() < kept.sum():
            eers.append(compute_eer(scores[kept], labels[kept]))
    return np.array(eers), len(speakers)
