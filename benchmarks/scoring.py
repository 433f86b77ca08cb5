"""Scoring at VoxCeleb1-E size, ours beside the original's way, in one run (SPEC.md section 3).

    python benchmarks/scoring.py [num_utterances=20000]

(a) trial scores: two dot products per trial vs the original's 25 stacked segment pairs per trial;
(b) metrics: EER + both minDCFs from one sort vs sklearn roc_curve + brentq for the EER alone.
"""

import inspect
import os
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import roc_curve

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from evaluation.scoring import score_trials, utterance_vectors  # noqa: E402
from utils.metrics import compute_metrics  # noqa: E402

NUM_TRIALS = 579_818  # VoxCeleb1-E (list_test_all2.txt)
NUM_SEG = 5
DIM = 192
ORIGINAL_CHUNK = 10_000  # trials per chunk for the original's way, so this machine survives it
CHUNK = inspect.signature(score_trials).parameters['chunk'].default
UTTS_PER_SPEAKER = 20


def original_scores(full, segments, enroll_idx, test_idx):
    """The original's way: unit embeddings; per trial the S x S segment pairs stacked side by side."""
    full, segments = F.normalize(full, dim=-1), F.normalize(segments, dim=-1)
    enroll_idx, test_idx = torch.from_numpy(enroll_idx), torch.from_numpy(test_idx)
    scores = np.empty(len(enroll_idx))
    for start in range(0, len(enroll_idx), ORIGINAL_CHUNK):
        e, t = enroll_idx[start : start + ORIGINAL_CHUNK], test_idx[start : start + ORIGINAL_CHUNK]
        pairs_e = segments[e].repeat_interleave(NUM_SEG, dim=1)  # (C, S*S, D)
        pairs_t = segments[t].repeat(1, NUM_SEG, 1)  # (C, S*S, D)
        segment_cos = (pairs_e * pairs_t).sum(-1).mean(1)  # (C,)
        full_cos = (full[e] * full[t]).sum(-1)  # (C,)
        scores[start : start + len(e)] = (0.5 * (full_cos + segment_cos)).double().numpy()
    return scores


def original_eer(scores, labels):
    fpr, tpr, _ = roc_curve(labels, scores, pos_label=1)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # interp1d divides by zero on vertical ROC segments
        return brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)


def best_time(function, repeat):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(num_utterances):
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    num_speakers = num_utterances // UTTS_PER_SPEAKER
    speaker_of = np.repeat(np.arange(num_speakers), UTTS_PER_SPEAKER)  # (N,)
    full = torch.randn(num_speakers, DIM)[speaker_of] + 2.5 * torch.randn(len(speaker_of), DIM)  # (N, D)
    segments = full[:, None] + 2 * torch.randn(len(full), NUM_SEG, DIM)  # (N, S, D)
    # about half the trials are targets: a test utterance of the enrolled speaker
    enroll_idx = rng.integers(0, len(full), NUM_TRIALS)
    same_speaker = speaker_of[enroll_idx] * UTTS_PER_SPEAKER + rng.integers(0, UTTS_PER_SPEAKER, NUM_TRIALS)
    test_idx = np.where(rng.random(NUM_TRIALS) < 0.5, same_speaker, rng.integers(0, len(full), NUM_TRIALS))
    labels = (speaker_of[enroll_idx] == speaker_of[test_idx]).astype(int)
    print(
        f'{NUM_TRIALS:,} trials over {num_utterances:,} utterances, {NUM_SEG} segments, {DIM}-d, '
        f'{labels.mean():.1%} targets, {torch.get_num_threads()} threads'
    )

    print('\n(a) trial scores')
    ours_s, (unit_full, seg_mean) = best_time(lambda: utterance_vectors(full, segments), 1)
    ours_t, ours = best_time(lambda: score_trials(unit_full, seg_mean, enroll_idx, test_idx), 3)
    ours_t += ours_s
    orig_t, orig = best_time(lambda: original_scores(full, segments, enroll_idx, test_idx), 1)
    stacked_gb = NUM_TRIALS * NUM_SEG * NUM_SEG * DIM * 4 / 1e9
    print(
        f'  original (25 stacked pairs per trial, chunks of {ORIGINAL_CHUNK:,}): {orig_t:8.3f} s; '
        f'unchunked it needs {stacked_gb:.1f} GB per side ({2 * stacked_gb:.1f} GB both)'
    )
    print(
        f'  ours (2 dot products per trial, utterance vectors included):  {ours_t:8.3f} s; '
        f'{2 * CHUNK * 2 * DIM * 4 / 1e6:.0f} MB per chunk of {CHUNK:,}'
    )
    score_difference = np.abs(ours - orig).max()
    print(
        f'  max |score difference| = {score_difference:.2e} (float32 embeddings) -> '
        f'{"EQUAL" if score_difference < 1e-5 else "DIFFERENT"} to 1e-5'
    )
    print(f'  SPEED-UP trial scores: {orig_t / ours_t:.1f}x')

    print('\n(b) metrics on the same scores')
    scores = ours
    ref_t, ref_eer = best_time(lambda: original_eer(scores, labels), 3)
    our_t, metrics = best_time(lambda: compute_metrics(scores, labels), 3)
    print(f'  original roc_curve + brentq, EER only:     {ref_t * 1000:8.1f} ms  EER {100 * ref_eer:.9f} %')
    print(
        f'  compute_metrics, EER + minDCF 0.05, 0.01: {our_t * 1000:8.1f} ms  EER {metrics["eer"]:.9f} %, '
        f'minDCF {metrics["min_dcf_0.05"]:.6f}, {metrics["min_dcf_0.01"]:.6f}'
    )
    difference = abs(metrics['eer'] / 100 - ref_eer)
    print(
        f'  |EER difference| = {difference:.2e} (as a fraction) -> {"EQUAL" if difference < 1e-9 else "DIFFERENT"}'
        f' to 1e-9'
    )
    print(f'  SPEED-UP metrics: {ref_t / our_t:.1f}x (target >= 2.5x)')


if __name__ == '__main__':
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
