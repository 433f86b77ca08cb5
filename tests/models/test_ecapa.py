import copy

import pytest
import torch
import torch.nn.functional as F

import models.ecapa as ecapa
from models.ecapa import EcapaTdnn, random_band


@pytest.mark.parametrize('in_dim', [768, 1024])
def test_embedding_shape_follows_in_dim_and_channels(in_dim):
    model = EcapaTdnn(in_dim, channels=64, embedding_size=48).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 20, in_dim)).shape == (3, 48)
    assert model.conv1[0].in_channels == in_dim
    assert model.conv2[0].out_channels == 192 and model.bn_pool.num_features == 384


def test_random_band_start_then_width_uniform_like_the_original():
    torch.manual_seed(0)
    starts, widths = zip(*(random_band(40, 10) for _ in range(6000)))
    assert sorted(set(starts)) == list(range(31)) and sorted(set(widths)) == list(range(11))
    assert abs(widths.count(0) / 6000 - 1 / 11) < 0.015 and abs(starts.count(30) / 6000 - 1 / 31) < 0.01
    assert {random_band(6, 10) for _ in range(200)} == {(0, width) for width in range(7)}  # limit > length


def test_spec_mask_zeroes_the_drawn_rectangle_in_every_utterance(monkeypatch):
    bands = iter([(2, 3), (4, 2)])  # channels 2..4, frames 4..5
    monkeypatch.setattr(ecapa, 'random_band', lambda length, max_width: next(bands))
    model = EcapaTdnn(8, channels=16, mask_freq=4, mask_time=3, mask_p=1.0)
    x = torch.arange(1.0, 2 * 8 * 7 + 1).reshape(2, 8, 7)
    expected = x.clone()
    expected[:, 2:5, 4:6] = 0
    assert torch.equal(model.spec_mask(x), expected)


@pytest.mark.parametrize('lengths', [None, [9, 6]], ids=['one-length', 'padded'])
def test_the_first_convolution_sees_each_utterance_instance_normalised_then_the_rectangle_zeroed(monkeypatch, lengths):
    """In training, what enters conv1: each utterance normalised per channel over its own valid
    frames (padding 0), and only then the drawn rectangle set to 0, so neither the rectangle's
    zeros nor the padding reach the norm's mean and variance."""
    bands = iter([(1, 3), (2, 5)])  # channels 1..3, frames 2..6: partly in the padded row's padding
    monkeypatch.setattr(ecapa, 'random_band', lambda length, max_width: next(bands))
    torch.manual_seed(4)
    model = EcapaTdnn(6, channels=16, mask_freq=3, mask_time=5, mask_p=1.0).double().train()
    x = 3.0 * torch.randn(2, 9, 6, dtype=torch.float64) + 1.0  # (B, T, D)
    seen = []
    model.conv1.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
    model(x, None if lengths is None else torch.tensor(lengths))

    expected = torch.zeros(2, 6, 9, dtype=torch.float64)  # (B, D, T)
    for row, length in enumerate(lengths or [9, 9]):
        valid = x[row, :length].T  # (D, t)
        mean, var = valid.mean(dim=1, keepdim=True), valid.var(dim=1, unbiased=False, keepdim=True)
        expected[row, :, :length] = (valid - mean) / torch.sqrt(var + 1e-5)
        torch.testing.assert_close(expected[row, :, :length], F.instance_norm(valid[None])[0])
    expected[:, 1:4, 2:7] = 0
    (entering,) = seen
    torch.testing.assert_close(entering, expected, rtol=1e-12, atol=1e-12)


def test_spec_mask_is_one_rectangle_for_the_batch_within_the_limits():
    torch.manual_seed(1)
    model = EcapaTdnn(64, channels=32, mask_freq=8, mask_time=5, mask_p=1.0)
    heights, widths = set(), set()
    for _ in range(300):
        zero = model.spec_mask(torch.ones(3, 64, 30)) == 0
        assert torch.equal(zero, zero[:1].expand_as(zero))  # the same in every utterance
        channels, frames = zero[0].any(dim=1), zero[0].any(dim=0)
        assert torch.equal(zero[0], channels[:, None] & frames[None, :])  # a rectangle, not a union of bands
        for band in (channels, frames):
            where = band.nonzero().flatten()
            assert len(where) == 0 or torch.equal(where, torch.arange(int(where[0]), int(where[-1]) + 1))
        heights.add(int(channels.sum()))
        widths.add(int(frames.sum()))
    assert heights == set(range(9)) and widths == set(range(6))
    never = EcapaTdnn(64, channels=32, mask_p=0.0)
    assert torch.equal(never.spec_mask(torch.ones(4, 64, 30)), torch.ones(4, 64, 30))


def test_spec_mask_probability():
    torch.manual_seed(2)
    model = EcapaTdnn(200, channels=32, mask_freq=100, mask_time=10, mask_p=0.6)
    masked = [bool((model.spec_mask(torch.ones(2, 200, 20)) == 0).any()) for _ in range(4000)]
    # a rectangle with a width of 0 (drawn 1 in 101 and 1 in 11) leaves the batch whole
    assert abs(sum(masked) / 4000 - 0.6 * 100 / 101 * 10 / 11) < 0.025


def test_masking_only_in_training():
    torch.manual_seed(3)
    masking = EcapaTdnn(96, channels=32, mask_p=1.0)
    plain = copy.deepcopy(masking)
    plain.mask_p = 0.0
    x = torch.randn(4, 25, 96)
    with torch.no_grad():
        assert torch.equal(masking.eval()(x), plain.eval()(x))
        assert not torch.allclose(masking.train()(x), plain.train()(x))
