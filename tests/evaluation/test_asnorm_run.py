"""AS-norm as a run uses it: the cohort from the training files, and every list scored with and
without it."""

import numpy as np
import soundfile as sf
import torch

from data.voxceleb import Trials, scan_voxceleb
from evaluation.evaluate import EmbeddingRecipe, score_lists, training_cohort
from models.build import build_model
from models.ssl import load_teacher
from tests.trainer.test_oskdft import ARGS, TINY
from utils.metrics import compute_eer


def test_the_cohort_is_each_training_speakers_utterances_embedded_as_test_utterances(corpus):
    manifest = scan_voxceleb(corpus['path_train'])
    args = dict(ARGS, asnorm_cohort_utts=1, num_test_frames=50, num_seg=2, num_workers='0')
    torch.manual_seed(0)
    model = build_model(args, load_teacher('tiny', TINY), num_classes=len(manifest.speakers)).eval()
    cohort_full, cohort_seg = training_cohort(
        model, manifest, EmbeddingRecipe.of(args), torch.device('cpu'), args['seed'], args['asnorm_cohort_utts'], False
    )
    assert cohort_full.shape == cohort_seg.shape == (len(manifest.speakers), 16)
    rng = np.random.default_rng([args['seed'], 7])  # the draw the cohort makes, speaker by speaker
    for speaker in range(len(manifest.speakers)):
        chosen = rng.permutation(np.flatnonzero(manifest.labels == speaker))[:1][0]
        wave = torch.from_numpy(sf.read(manifest.paths[chosen], dtype='float32')[0])[None]
        with torch.no_grad():
            alone = torch.nn.functional.normalize(model.embed(wave), dim=-1)[0]
        torch.testing.assert_close(cohort_full[speaker], alone, atol=1e-5, rtol=0)


def test_each_list_is_scored_with_and_without_asnorm():
    rng = np.random.default_rng(0)
    full = torch.nn.functional.normalize(torch.randn(12, 8), dim=-1)
    seg = torch.nn.functional.normalize(torch.randn(12, 8), dim=-1) * 0.8
    cohort = (torch.nn.functional.normalize(torch.randn(7, 8), dim=-1), torch.randn(7, 8) * 0.3)
    keys = [f'u{i:02d}' for i in range(12)]
    pairs = rng.integers(0, 12, (40, 2))
    trials = Trials(
        labels=np.r_[np.ones(20, int), np.zeros(20, int)],
        enroll=[keys[a] for a, _ in pairs],
        test=[keys[b] for _, b in pairs],
    )
    result = score_lists({'Vox1-O': trials}, keys, full, seg, cohort, top_k=3)['Vox1-O']
    vectors = torch.cat([full, seg], 1).double().numpy()
    cohort_vectors = torch.cat(cohort, 1).double().numpy()
    expected = []
    for (a, b), score in zip(pairs, result['scores']):
        stats = []
        for u in (a, b):
            top = sorted((0.5 * vectors[u] @ c for c in cohort_vectors), reverse=True)[:3]
            stats.append((np.mean(top), np.std(top)))
        expected.append(0.5 * ((score - stats[0][0]) / stats[0][1] + (score - stats[1][0]) / stats[1][1]))
    np.testing.assert_allclose(result['asnorm_scores'], expected, rtol=1e-5)
    assert result['asnorm']['eer'] == compute_eer(expected, trials.labels)
    assert result['asnorm']['top_k'] == 3 and result['asnorm']['cohort'] == 7 and 'eer' in result
