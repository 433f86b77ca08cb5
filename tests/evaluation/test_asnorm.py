import math

import numpy as np
import pytest
import torch

from evaluation.asnorm import apply_asnorm, asnorm_scores, cohort_vectors, top_k_stats, utterance_stats

NUM_UTTS, NUM_TRAIN, NUM_SPEAKERS, DIM, TOP_K = 40, 120, 30, 16, 10


def unit_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def random_vectors(count, rng):
    """Vectors shaped like utterance_vectors' output: unit full (count, D), seg_mean of norm below 1."""
    full = unit_rows(rng.standard_normal((count, DIM)))
    seg_mean = 0.7 * unit_rows(full + 0.5 * rng.standard_normal((count, DIM)))
    return full, seg_mean


def random_setup(seed=0):
    """Evaluation vectors, training vectors with labels (every speaker present), and random trials."""
    rng = np.random.default_rng(seed)
    full, seg_mean = random_vectors(NUM_UTTS, rng)
    train_full, train_seg = random_vectors(NUM_TRAIN, rng)
    labels = rng.permutation(np.arange(NUM_TRAIN) % NUM_SPEAKERS)
    enroll_idx, test_idx = rng.integers(0, NUM_UTTS, 200), rng.integers(0, NUM_UTTS, 200)
    scores = 0.5 * (np.sum(full[enroll_idx] * full[test_idx], 1) + np.sum(seg_mean[enroll_idx] * seg_mean[test_idx], 1))
    return full, seg_mean, train_full, train_seg, labels, enroll_idx, test_idx, scores


def loop_cohort(train_full, train_seg, labels):
    """Speaker by speaker: the unit mean of the full vectors, the plain mean of the seg_mean vectors."""
    cohort_full, cohort_seg = [], []
    for speaker in range(NUM_SPEAKERS):
        members = [i for i in range(len(labels)) if labels[i] == speaker]
        mean_full = sum(train_full[i] for i in members) / len(members)
        cohort_full.append(mean_full / math.sqrt(sum(x * x for x in mean_full)))
        cohort_seg.append(sum(train_seg[i] for i in members) / len(members))
    return np.array(cohort_full), np.array(cohort_seg)


def loop_stats(full, seg_mean, cohort_full, cohort_seg, top_k):
    """Per utterance: its score against each speaker, the top_k largest, their mean and population std."""
    means, stds = [], []
    for u in range(len(full)):
        row = [
            0.5 * (sum(full[u] * cohort_full[c]) + sum(seg_mean[u] * cohort_seg[c])) for c in range(len(cohort_full))
        ]
        top = sorted(row, reverse=True)[:top_k]
        mean = sum(top) / len(top)
        means.append(mean)
        stds.append(math.sqrt(sum((x - mean) ** 2 for x in top) / len(top)))
    return means, stds


def loop_asnorm(scores, enroll_idx, test_idx, means, stds):
    return [
        0.5 * ((s - means[e]) / stds[e] + (s - means[t]) / stds[t]) for s, e, t in zip(scores, enroll_idx, test_idx)
    ]


def test_cohort_vectors_equal_a_hand_loop():
    _, _, train_full, train_seg, labels, *_ = random_setup()
    cohort_full, cohort_seg = cohort_vectors(train_full, train_seg, labels, NUM_SPEAKERS)
    expected_full, expected_seg = loop_cohort(train_full, train_seg, labels)
    assert cohort_full.shape == cohort_seg.shape == (NUM_SPEAKERS, DIM)
    np.testing.assert_allclose(cohort_full.numpy(), expected_full, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cohort_seg.numpy(), expected_seg, rtol=0, atol=1e-12)


def test_cohort_vectors_refuse_a_speaker_without_utterances():
    _, _, train_full, train_seg, labels, *_ = random_setup()
    with pytest.raises(ValueError, match='num_speakers: 1 of 31 speakers have no utterance'):
        cohort_vectors(train_full, train_seg, labels, NUM_SPEAKERS + 1)
    with pytest.raises(ValueError, match='labels: speaker labels must lie in'):
        cohort_vectors(train_full, train_seg, labels, NUM_SPEAKERS - 1)


def test_asnorm_equals_brute_force():
    full, seg_mean, train_full, train_seg, labels, enroll_idx, test_idx, scores = random_setup()
    cohort_full, cohort_seg = cohort_vectors(train_full, train_seg, labels, NUM_SPEAKERS)
    mean, std = utterance_stats(full, seg_mean, cohort_full, cohort_seg, TOP_K)
    loop_full, loop_seg = loop_cohort(train_full, train_seg, labels)
    means, stds = loop_stats(full, seg_mean, loop_full, loop_seg, TOP_K)
    expected = loop_asnorm(scores, enroll_idx, test_idx, means, stds)
    assert mean.dtype == std.dtype == np.float64 and mean.shape == std.shape == (NUM_UTTS,)
    np.testing.assert_allclose(mean, means, rtol=0, atol=1e-6)
    np.testing.assert_allclose(std, stds, rtol=0, atol=1e-6)
    np.testing.assert_allclose(apply_asnorm(scores, enroll_idx, test_idx, mean, std), expected, rtol=0, atol=1e-6)
    # the same from the whole (N, C) cohort score matrix at once
    cohort_scores = 0.5 * (full @ loop_full.T + seg_mean @ loop_seg.T)  # (N, C)
    np.testing.assert_allclose(
        asnorm_scores(scores, enroll_idx, test_idx, cohort_scores, TOP_K), expected, rtol=0, atol=1e-6
    )


def test_known_numbers_pin_top_k_population_std_and_each_side():
    """Cohort scores chosen so that each misreading gives another number: the bottom k (4.5), the sample
    std (0.354), enroll mean with test std and vice versa (-0.5), the enroll statistics on both sides (-1)."""
    cohort_scores = np.array(
        [
            [0.9, 0.1, 0.5, 0.3],  # top 2: 0.9, 0.5 -> mean 0.7, std 0.2
            [0.2, 0.4, 0.0, -0.2],
        ]
    )  # top 2: 0.4, 0.2 -> mean 0.3, std 0.1
    mean, std = top_k_stats(cohort_scores, 2)
    np.testing.assert_allclose(mean, [0.7, 0.3], atol=1e-12)
    np.testing.assert_allclose(std, [0.2, 0.1], atol=1e-12)
    # trial 0: enroll 0, test 1; trial 1 the other way round, which the symmetric formula scores the same
    normalised = asnorm_scores([0.5, 0.5], [0, 1], [1, 0], cohort_scores, top_k=2)
    np.testing.assert_allclose(normalised, [0.5, 0.5], atol=1e-12)


def test_top_k_beyond_the_cohort_uses_the_whole_cohort():
    full, seg_mean, train_full, train_seg, labels, enroll_idx, test_idx, scores = random_setup()
    cohort_full, cohort_seg = cohort_vectors(train_full, train_seg, labels, NUM_SPEAKERS)
    whole = utterance_stats(full, seg_mean, cohort_full, cohort_seg, NUM_SPEAKERS)
    beyond = utterance_stats(full, seg_mean, cohort_full, cohort_seg, 10 * NUM_SPEAKERS)
    means, stds = loop_stats(full, seg_mean, *loop_cohort(train_full, train_seg, labels), NUM_SPEAKERS)
    np.testing.assert_array_equal(beyond[0], whole[0])
    np.testing.assert_array_equal(beyond[1], whole[1])
    np.testing.assert_allclose(beyond[0], means, rtol=0, atol=1e-6)
    np.testing.assert_allclose(beyond[1], stds, rtol=0, atol=1e-6)


def test_top_k_leaving_fewer_than_two_scores_is_an_error():
    with pytest.raises(ValueError, match='top_k: 1 with a cohort of 4 speakers'):
        top_k_stats(np.zeros((3, 4)), 1)
    with pytest.raises(ValueError, match='top_k: 10 with a cohort of 1 speakers'):
        top_k_stats(np.zeros((3, 1)), 10)


def test_chunked_equals_unchunked_on_torch_inputs():
    full, seg_mean, train_full, train_seg, labels, *_ = random_setup(seed=1)
    full, seg_mean = torch.from_numpy(full), torch.from_numpy(seg_mean)
    cohort = cohort_vectors(
        torch.from_numpy(train_full), torch.from_numpy(train_seg), torch.from_numpy(labels), NUM_SPEAKERS
    )
    small = utterance_stats(full, seg_mean, *cohort, TOP_K, chunk=7)
    large = utterance_stats(full, seg_mean, *cohort, TOP_K, chunk=1000)
    np.testing.assert_allclose(small[0], large[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(small[1], large[1], rtol=0, atol=1e-12)


def test_float32_inputs_agree_with_float64():
    full, seg_mean, train_full, train_seg, labels, *_ = random_setup(seed=2)
    cohort64 = cohort_vectors(train_full, train_seg, labels, NUM_SPEAKERS)
    stats64 = utterance_stats(full, seg_mean, *cohort64, TOP_K)
    cohort32 = cohort_vectors(train_full.astype(np.float32), train_seg.astype(np.float32), labels, NUM_SPEAKERS)
    stats32 = utterance_stats(full.astype(np.float32), seg_mean.astype(np.float32), *cohort32, TOP_K)
    assert cohort32[0].dtype == torch.float32
    np.testing.assert_allclose(stats32[0], stats64[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(stats32[1], stats64[1], rtol=0, atol=1e-6)
