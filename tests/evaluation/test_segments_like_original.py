"""eval_segments_like_original: the segments embedded as the original code's evaluation did (its
training-mode split of a 5-segment batch: segments 1-2 without adapters, 3-5 with them)."""

import numpy as np
import pytest
import soundfile as sf
import torch

from data.datasets import evenly_spaced_segments
from evaluation.evaluate import EmbeddingRecipe, embed_as_set, embed_segments, embed_utterances
from evaluation.scoring import utterance_vectors
from tests.evaluation.test_evaluate import ARGS, model_with

SEGMENT = 8000  # 0.5 s


@pytest.fixture(scope='module')
def model():
    """A student whose adapters add much (up far from its zero start), so the two paths differ."""
    model = model_with('layer')
    for adapter in model.student.adapters():
        torch.nn.init.normal_(adapter.up.weight, std=1.0)
    return model


def by_hand(model, segs):
    """Every segment through the KD path (no adapters) and through the SV path, (N, E) each."""
    with torch.no_grad():
        return model.backend(model.student(segs, adapters=False)), model.backend(model.student(segs, adapters=True))


@pytest.mark.parametrize('num_seg, plain', [(5, 2), (3, 1), (1, 0)])
def test_the_first_half_of_each_utterances_segments_skips_the_adapters(model, num_seg, plain):
    """Of each utterance's num_seg segments the first num_seg // 2 (the original's half_batch)
    equal the no-adapter embedding, the rest the adapter one; three utterances in one group."""
    torch.manual_seed(1)
    segs = 0.1 * torch.randn(3 * num_seg, SEGMENT)
    without, with_adapters = by_hand(model, segs)
    assert (without - with_adapters).abs().amax(dim=1).min() > 1e-3  # every embedding, by 100x the tolerance
    with torch.no_grad():
        like = embed_segments(model, segs, num_seg, like_original=True).view(3, num_seg, -1)
        default = embed_segments(model, segs, num_seg)
    without, with_adapters = without.view(3, num_seg, -1), with_adapters.view(3, num_seg, -1)
    torch.testing.assert_close(like[:, :plain], without[:, :plain], atol=1e-5, rtol=0)
    torch.testing.assert_close(like[:, plain:], with_adapters[:, plain:], atol=1e-5, rtol=0)
    torch.testing.assert_close(default.view(3, num_seg, -1), with_adapters, atol=1e-5, rtol=0)
    assert torch.equal(default, model.embed(segs))  # off: SpeakerNet.embed itself, as before


def write_utterances(root, seconds):
    rng = np.random.default_rng(3)
    keys = []
    for i, length in enumerate(seconds):
        key = f'id2{i:04d}/video/00001.wav'
        (root / key).parent.mkdir(parents=True)
        sf.write(str(root / key), (0.1 * rng.standard_normal(int(length * 16000))).astype(np.float32), 16000)
        keys.append(key)
    return keys


def test_the_switch_in_the_runs_settings_changes_the_segment_vectors_only(model, tmp_path):
    """embed_as_set (evaluation, the AS-norm cohort, mode=embed / verify) reads the switch from the
    run's settings: on, the full vectors stay and the segment means are those of the split; off,
    every segment takes the adapters."""
    keys = write_utterances(tmp_path, (1.3, 0.8, 2.0))
    num_seg = ARGS['num_seg']
    args = dict(ARGS, num_test_frames=SEGMENT // 160, eval_batch_seconds=60.0, num_workers=0)
    cpu = torch.device('cpu')
    off = embed_as_set(model, str(tmp_path), keys, EmbeddingRecipe.of(args), cpu, show_progress=False)
    on = embed_as_set(
        model, str(tmp_path), keys, EmbeddingRecipe.of(dict(args, eval_segments_like_original=True)), cpu, False
    )
    segs = torch.stack(
        [
            torch.from_numpy(evenly_spaced_segments(sf.read(tmp_path / key, dtype='float32')[0], SEGMENT, num_seg))
            for key in keys
        ]
    )  # (N, S, L)
    without, with_adapters = (emb.view(len(keys), num_seg, -1) for emb in by_hand(model, segs.flatten(0, 1)))
    split = torch.cat([without[:, :2], with_adapters[:, 2:]], dim=1)
    torch.testing.assert_close(on[0], off[0], atol=0, rtol=0)
    torch.testing.assert_close(off[1], utterance_vectors(off[0], with_adapters)[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(on[1], utterance_vectors(on[0], split)[1], atol=1e-5, rtol=0)
    assert (on[1] - off[1]).abs().amax(dim=1).min() > 1e-3
    default = embed_utterances(
        model, str(tmp_path), keys, SEGMENT, num_seg, cpu, show_progress=False, max_samples=960_000
    )
    assert all(torch.equal(a, b) for a, b in zip(off, default))
