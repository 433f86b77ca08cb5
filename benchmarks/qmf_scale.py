"""QMF's own arithmetic at VoxCeleb2's size, without the model: the calibration list drawn from
1,092,009 training utterances of 5,994 speakers, the imposter means and AS-norm statistics of its
utterances against the 5,994-speaker cohort, the features, the scikit-learn fit and the LLRs of
Vox1-H's 550,894 trials. Embeddings are random unit vectors (192-dim): the embedding itself costs what
evaluation costs per utterance (the demo's rate, the telemetry's utterances/s), measured apart.

    python benchmarks/qmf_scale.py        # about a minute on 2 CPU cores

The last line is `qmf_scale: seconds=X` (draw + statistics + fit + apply).
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation import qmf  # noqa: E402
from evaluation.scoring import score_trials  # noqa: E402
from machine import describe  # noqa: E402

SPEAKERS, UTTERANCES, DIM = 5994, 1_092_009, 192
TRIALS, TOP_K, ASNORM_TOP_K = 30_000, 300, 300
TEST_TRIALS, TEST_UTTERANCES = 550_894, 4_874  # Vox1-H (cleaned): its trials and the utterances it scores


def unit(rows, generator):
    vectors = torch.randn(rows, DIM, generator=generator)
    return vectors / vectors.norm(dim=1, keepdim=True)


def main_(argv=None):
    print(f'{describe()}; torch {torch.__version__}, {torch.get_num_threads()} threads', flush=True)
    generator = torch.Generator().manual_seed(0)
    labels = np.random.default_rng(0).integers(0, SPEAKERS, UTTERANCES)
    cohort = (unit(SPEAKERS, generator), unit(SPEAKERS, generator))
    calibration = qmf.new_calibration(cohort, {'qmf_top_k': TOP_K, 'asnorm_top_k': ASNORM_TOP_K, 'p_target': 0.01})
    times = {}

    started = time.perf_counter()
    enroll, test, target = qmf.calibration_trials(labels, TRIALS, 1)
    used, inverse = np.unique(np.concatenate([enroll, test]), return_inverse=True)
    times['draw the calibration list'] = time.perf_counter() - started

    full, seg = unit(len(used), generator), unit(len(used), generator)
    seconds = np.random.default_rng(1).uniform(4, 20, len(used))
    started = time.perf_counter()
    quality = qmf.utterance_quality(calibration, full, seg, seconds, own=labels[used])
    enroll_idx, test_idx = inverse[: len(enroll)], inverse[len(enroll) :]
    raw = score_trials(full, seg, enroll_idx, test_idx)
    features = qmf.quality_features(raw, quality, enroll_idx, test_idx)
    times[f'imposter means and features ({len(used):,} utterances)'] = time.perf_counter() - started

    started = time.perf_counter()
    calibration.update(qmf.fit_qmf(features, target))
    times[f'fit ({TRIALS:,} trials)'] = time.perf_counter() - started

    full, seg = unit(TEST_UTTERANCES, generator), unit(TEST_UTTERANCES, generator)
    rng = np.random.default_rng(2)
    enroll_idx, test_idx = rng.integers(0, TEST_UTTERANCES, (2, TEST_TRIALS))
    started = time.perf_counter()
    quality = qmf.utterance_quality(calibration, full, seg, rng.uniform(4, 20, TEST_UTTERANCES))
    llrs = qmf.trial_llrs(calibration, score_trials(full, seg, enroll_idx, test_idx), quality, enroll_idx, test_idx)
    times[f'apply to Vox1-H ({TEST_TRIALS:,} trials)'] = time.perf_counter() - started
    assert np.isfinite(llrs).all()

    for what, value in times.items():
        print(f'{what}: {value:.1f} s')
    print(f'calibration utterances to embed: {len(used):,} (of {UTTERANCES:,})')
    print(f'qmf_scale: seconds={sum(times.values()):.1f}')


if __name__ == '__main__':
    main_(sys.argv[1:])
