"""Batched enrollment: the same embeddings as one utterance at a time, within a memory budget."""

import numpy as np
import pytest
import soundfile as sf
import torch

from arguments import EXPERIMENT_ARGS, SYSTEM_ARGS
from evaluation.evaluate import embed_utterances, plan_batches
from models.build import build_model
from models.ssl import load_teacher

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)
ARGS = dict(
    {**SYSTEM_ARGS, **EXPERIMENT_ARGS}, num_hidden_layers=2, ecapa_channels=16, embedding_size=16, spec_mask_freq=4
)
SECONDS = (2.9, 0.7, 1.6, 2.2, 0.9, 1.6, 2.5, 1.1)


def model_with(front_end_norm):
    """A student whose CNN normalises per frame ('layer') or per channel over time ('group'), with
    random BatchNorm statistics so that a padded frame that leaks into a mean would show."""
    torch.manual_seed(0)
    teacher = load_teacher(
        'tiny', dict(TINY, feat_extract_norm=front_end_norm, do_stable_layer_norm=front_end_norm == 'layer')
    )
    model = build_model(ARGS, teacher, num_classes=4)
    for module in model.modules():
        if getattr(module, 'running_mean', None) is not None:
            module.running_mean.normal_(std=0.1)
            module.running_var.uniform_(0.5, 2.0)
    for adapter in model.student.adapters():
        torch.nn.init.normal_(adapter.up.weight, std=0.1)
    return model.eval()


@pytest.fixture(scope='module')
def utterances(tmp_path_factory):
    root = tmp_path_factory.mktemp('test')
    rng = np.random.default_rng(0)
    keys = []
    for i, seconds in enumerate(SECONDS):
        key = f'id1{i:04d}/video/00001.wav'
        (root / key).parent.mkdir(parents=True)
        sf.write(str(root / key), (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
        keys.append(key)
    return str(root), keys


@pytest.mark.parametrize('front_end_norm', ['layer', 'group'])
def test_batched_enrollment_equals_one_utterance_at_a_time(utterances, front_end_norm):
    """Full utterances padded into one forward (masks in the encoder and ECAPA); 'group': the
    first CNN layer on each utterance's own samples."""
    root, keys = utterances
    model = model_with(front_end_norm)
    alone = embed_utterances(model, root, keys, 16000, 3, torch.device('cpu'), show_progress=False)
    batched = embed_utterances(
        model, root, keys, 16000, 3, torch.device('cpu'), show_progress=False, max_samples=16000 * 12
    )
    for one, many in zip(alone, batched):
        assert one.shape == (len(keys), 16)
        torch.testing.assert_close(many, one, atol=1e-4, rtol=0)
    assert torch.pdist(alone[0]).min() > 0.01 and torch.pdist(alone[1]).min() > 0.01  # 100x the tolerance apart


def test_a_group_norm_front_end_keeps_padding_out_of_its_first_layer(utterances):
    """Why the 'group' model's first CNN layer sees each utterance alone: its group norm over
    time, fed the padding, would change the frames."""
    model = model_with('group')
    waves = torch.zeros(2, 32000)
    waves[0] = torch.randn(32000)
    waves[1, :16000] = torch.randn(16000)
    lengths = torch.tensor([32000, 16000])
    with torch.no_grad():
        alone = model.student.extract_features(waves[1:, :16000])[0]  # (T, C)
        frames = len(alone)
        naive = model.student.extract_features(waves)[1, :frames]
        padded = model.student.extract_features_padded(waves, lengths)[1, :frames]
        assert (naive - alone).abs().max() > 1e-2
        torch.testing.assert_close(padded, alone, atol=1e-5, rtol=0)
        torch.testing.assert_close(model.embed(waves, lengths)[1], model.embed(waves[1:, :16000])[0], atol=1e-4, rtol=0)


def test_batches_respect_the_memory_budget_and_cover_every_utterance_once():
    lengths = np.random.default_rng(1).integers(8000, 100_000, 200)
    budget, segment, count = 400_000, 16_000, 5
    groups = plan_batches(lengths, segment, count, budget)
    assert sorted(i for group in groups for i in group) == list(range(200))
    order = [i for group in groups for i in group]
    assert np.all(np.diff(lengths[order]) <= 0)  # longest first
    for group in groups:
        cost = max(len(group) * lengths[group].max(), len(group) * count * segment)
        assert cost <= budget
    sizes = [len(group) for group in groups]
    assert max(sizes) == budget // (count * segment) and sizes[0] == budget // lengths.max()
    assert plan_batches(np.array([900_000, 10]), segment, count, budget) == [[0], [1]]  # too long: alone
