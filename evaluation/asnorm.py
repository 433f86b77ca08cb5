"""Adaptive symmetric score normalisation (AS-norm) against a cohort of training speakers.

A trial score s(e, t) becomes 0.5 x ((s - mu_e) / sigma_e + (s - mu_t) / sigma_t), where mu_u and sigma_u
are the mean and standard deviation of utterance u's top_k highest scores against the cohort (Matejka et
al., 2017; WeSpeaker's score_norm.py). The statistics depend on the utterance alone, so they are computed
once per utterance (N x C cohort scores) and looked up per trial, never once per trial (M x C).

Cohort scores use the trial score's formula of evaluation/scoring.py: 0.5 x (full . full + seg_mean . seg_mean),
each cohort speaker standing in for one utterance.
"""

import numpy as np
import torch
import torch.nn.functional as F


def as_tensor(x) -> torch.Tensor:
    """A torch tensor of x (a tensor, detached, or anything numpy reads), sharing memory where it can."""
    return x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))


def cohort_vectors(full, seg_mean, labels, num_speakers: int):
    """Each training speaker as one pseudo-utterance, from its utterances' vectors (utterance_vectors):
    full (N, D) unit, seg_mean (N, D), labels (N,) in [0, num_speakers) ->
    (cohort_full (C, D): the unit mean of the speaker's full vectors,
     cohort_seg (C, D): the mean of the speaker's seg_mean vectors), torch tensors of full's dtype.

    Why the full mean is re-normalised and the seg_mean mean is not: a trial's full term is a cosine, and
    the unit speaker mean keeps the cohort's full term a cosine (to the speaker's direction), as WeSpeaker
    scores cosines against its per-speaker mean embeddings. Used as is, the mean of unit vectors is shorter
    the more a speaker's utterances spread or the more of them there are, so the top_k would pick speakers
    by their spread and count rather than their closeness. A trial's seg term is not a cosine but a mean of
    segment cosines; the mean of the speaker's seg_mean vectors is the mean of all its unit segment vectors
    (every utterance has num_seg of them), which is what utterance_vectors makes of one utterance's
    segments, so the cohort's seg term stays the mean cosine between u's segments and the speaker's.
    """
    full, seg_mean = as_tensor(full), as_tensor(seg_mean)
    labels = as_tensor(labels).to(device=full.device, dtype=torch.long)  # (N,)
    if len(labels) != len(full) or len(seg_mean) != len(full):
        raise ValueError(
            f'labels: {len(labels)} labels for {len(full)} full and {len(seg_mean)} '
            f'seg_mean vectors; each utterance needs one of each'
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_speakers):
        raise ValueError(
            f'labels: speaker labels must lie in [0, num_speakers={num_speakers}), '
            f'got {int(labels.min())}..{int(labels.max())}'
        )
    counts = torch.bincount(labels, minlength=num_speakers)  # (C,)
    if (counts == 0).any():
        empty = torch.nonzero(counts == 0).flatten()[:5].tolist()
        raise ValueError(
            f'num_speakers: {int((counts == 0).sum())} of {num_speakers} speakers have no '
            f'utterance (the first: {empty}); a cohort speaker needs at least one'
        )
    sum_full = full.new_zeros(num_speakers, full.shape[1]).index_add_(0, labels, full)  # (C, D)
    sum_seg = seg_mean.new_zeros(num_speakers, seg_mean.shape[1]).index_add_(0, labels, seg_mean)  # (C, D)
    return F.normalize(sum_full, dim=1), sum_seg / counts[:, None].to(sum_seg)


def top_k_stats(cohort_scores, top_k: int):
    """Mean and population std of each row's top_k largest scores: (N, C) -> float64 numpy (N,), (N,).

    A top_k of C or more takes the whole cohort (plain s-norm), as WeSpeaker's slice of its sorted scores
    does. The std is the population one (divides by k), as WeSpeaker's np.std; the sample std would scale
    every normalised score by sqrt((k - 1) / k), which moves no EER but changes the scores' values."""
    scores = as_tensor(cohort_scores)
    k = min(top_k, scores.shape[1])
    if k < 2:
        raise ValueError(
            f'top_k: {top_k} with a cohort of {scores.shape[1]} speakers leaves {k} score per '
            f'utterance; a standard deviation needs at least 2'
        )
    top = torch.topk(scores, k, dim=1, sorted=False).values.double()  # (N, k)
    return top.mean(dim=1).cpu().numpy(), top.std(dim=1, correction=0).cpu().numpy()


def utterance_stats(full, seg_mean, cohort_full, cohort_seg, top_k: int, chunk: int = 4096, exclude=None):
    """Each utterance's AS-norm statistics, float64 numpy (N,) mean and (N,) std, from its vectors
    full (N, D), seg_mean (N, D) and the cohort's (C, D) each (cohort_vectors), on full's device and dtype.
    exclude (N,): a cohort row each utterance leaves out (its own speaker's, for training utterances),
    so its statistics come from at most C - 1 speakers; None: none left out.

    Utterances are scored `chunk` at a time: memory holds chunk x C cohort scores (4,096 x 5,994 float32:
    98 MB) where all at once would be N x C (153,516 x 5,994: 3.7 GB)."""
    vectors = torch.cat([as_tensor(full), as_tensor(seg_mean)], dim=1)  # (N, 2D)
    cohort = torch.cat([as_tensor(cohort_full), as_tensor(cohort_seg)], dim=1).to(vectors)  # (C, 2D)
    if exclude is not None:
        exclude = as_tensor(exclude).to(device=vectors.device, dtype=torch.long)  # (N,)
        top_k = min(top_k, len(cohort) - 1)
    means, stds = [], []
    for start in range(0, len(vectors), chunk):
        scores = 0.5 * (vectors[start : start + chunk] @ cohort.T)  # (chunk, C)
        if exclude is not None:
            left_out = exclude[start : start + chunk]
            scores[torch.arange(len(left_out), device=scores.device), left_out] = -torch.inf
        mean, std = top_k_stats(scores, top_k)
        means.append(mean)
        stds.append(std)
    if not means:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(means), np.concatenate(stds)


def apply_asnorm(scores, enroll_idx, test_idx, mean, std):
    """Normalised trial scores, float64 (M,): trial i scores utterance enroll_idx[i] against test_idx[i]
    (indices into the N utterances of mean and std, as in score_trials)."""
    scores = np.asarray(scores, dtype=np.float64)  # (M,)
    mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)  # (N,)
    enroll_idx, test_idx = np.asarray(enroll_idx), np.asarray(test_idx)
    return 0.5 * ((scores - mean[enroll_idx]) / std[enroll_idx] + (scores - mean[test_idx]) / std[test_idx])


def asnorm_scores(scores, enroll_idx, test_idx, cohort_scores, top_k: int):
    """AS-norm of trial scores (M,) from every utterance's cohort scores (N, C) held at once; for many
    utterances use utterance_stats, which never holds them all, then apply_asnorm."""
    return apply_asnorm(scores, enroll_idx, test_idx, *top_k_stats(cohort_scores, top_k))
