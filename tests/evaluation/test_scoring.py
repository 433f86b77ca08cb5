import numpy as np
import torch
import torch.nn.functional as F

from data.voxceleb import Trials
from evaluation.evaluate import score_lists
from evaluation.scoring import score_trials, utterance_vectors
from trainer.train import improves


def original_score(full_e, full_t, segs_e, segs_t):
    """The original per-trial way: normalise, mean of the 1 x 1 and S x S cosine matrices, averaged."""
    full_e, full_t = F.normalize(full_e, dim=-1), F.normalize(full_t, dim=-1)
    segs_e, segs_t = F.normalize(segs_e, dim=-1), F.normalize(segs_t, dim=-1)
    return 0.5 * (torch.mean(full_e @ full_t.T) + torch.mean(segs_e @ segs_t.T))


def random_embeddings(num_utts=40, num_seg=5, dim=192, seed=0):
    generator = torch.Generator().manual_seed(seed)
    full = 3 * torch.randn(num_utts, dim, generator=generator)
    segments = full[:, None] + 2 * torch.randn(num_utts, num_seg, dim, generator=generator)
    return full, segments


def test_utterance_vectors_are_unit_full_and_mean_unit_segments():
    full, segments = random_embeddings(num_utts=6, num_seg=3, dim=8)
    unit_full, seg_mean = utterance_vectors(full, segments)
    torch.testing.assert_close(unit_full.norm(dim=1), torch.ones(6))
    torch.testing.assert_close(seg_mean[2], sum(s / s.norm() for s in segments[2]) / 3)


def test_scores_equal_the_original_per_trial_way():
    full, segments = random_embeddings()
    rng = np.random.default_rng(0)
    enroll_idx, test_idx = rng.integers(0, 40, 300), rng.integers(0, 40, 300)
    unit_full, seg_mean = utterance_vectors(full, segments)
    scores = score_trials(unit_full, seg_mean, enroll_idx, test_idx, chunk=70)
    expected = [
        original_score(full[e : e + 1], full[t : t + 1], segments[e], segments[t]).item()
        for e, t in zip(enroll_idx, test_idx)
    ]
    assert scores.dtype == np.float64 and scores.shape == (300,)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-6)


def test_chunking_does_not_change_scores_and_lists_are_accepted():
    full, segments = random_embeddings(num_utts=10)
    unit_full, seg_mean = utterance_vectors(full, segments)
    enroll_idx, test_idx = [0, 1, 2, 3, 9], [9, 8, 2, 1, 0]
    one_go = score_trials(unit_full, seg_mean, enroll_idx, test_idx)
    np.testing.assert_array_equal(score_trials(unit_full, seg_mean, enroll_idx, test_idx, chunk=2), one_go)
    # a trial of an utterance with itself: full cosine 1, segment part the squared norm of its mean unit vector
    assert abs(one_go[2] - 0.5 * (1 + seg_mean[2].double().square().sum().item())) < 1e-6


def test_a_list_with_non_finite_scores_is_not_scored_and_never_counts_as_an_improvement():
    full, segments = random_embeddings(num_utts=4, num_seg=2, dim=8)
    full[2] = float('nan')
    trials = Trials(labels=np.array([1, 0, 1, 0]), enroll=['a', 'a', 'b', 'c'], test=['b', 'c', 'd', 'd'])
    results = score_lists({'Vox1-O': trials}, ['a', 'b', 'c', 'd'], *utterance_vectors(full, segments))
    result = results['Vox1-O']
    assert result['nonfinite'] == 2 and result['trials'] == 4 and np.isnan(result['eer'])
    assert not improves(result['eer'], float('inf'))
    assert improves(10.0, 12.5) and not improves(12.5, 12.5)
