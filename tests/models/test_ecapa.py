import copy

import pytest
import torch

from models.ecapa import EcapaTdnn, band_mask


@pytest.mark.parametrize('in_dim', [768, 1024])
def test_embedding_shape_follows_in_dim_and_channels(in_dim):
    model = EcapaTdnn(in_dim, channels=64, embedding_size=48).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 20, in_dim)).shape == (3, 48)
    assert model.conv1[0].in_channels == in_dim
    assert model.conv2[0].out_channels == 192 and model.bn_pool.num_features == 384


def test_band_mask_is_one_contiguous_band_within_the_limit():
    torch.manual_seed(0)
    mask = band_mask(500, 40, 10, 'cpu')
    widths = mask.sum(dim=1)
    assert widths.max() <= 10 and widths.min() == 0 and widths.max() == 10
    for row, width in zip(mask, widths):
        if width:
            start = int(row.nonzero()[0])
            assert row[start:start + width].all()


def test_spec_mask_zeroes_one_channel_band_and_one_frame_band():
    torch.manual_seed(1)
    model = EcapaTdnn(64, channels=32, mask_freq=8, mask_time=5, mask_p=1.0)
    masked = model.spec_mask(torch.ones(200, 64, 30))
    zero = masked == 0
    channels = zero.all(dim=2)                      # (B, D) channels zeroed in every frame
    frames = zero.all(dim=1)                        # (B, T) frames zeroed in every channel
    assert torch.equal(zero, channels[:, :, None] | frames[:, None, :])
    assert channels.sum(dim=1).max() == 8 and frames.sum(dim=1).max() == 5
    never = EcapaTdnn(64, channels=32, mask_p=0.0)
    assert torch.equal(never.spec_mask(torch.ones(4, 64, 30)), torch.ones(4, 64, 30))


def test_spec_mask_probability():
    torch.manual_seed(2)
    model = EcapaTdnn(200, channels=32, mask_freq=100, mask_time=10, mask_p=0.6)
    masked = model.spec_mask(torch.ones(4000, 200, 20))
    rate = (masked == 0).flatten(1).any(dim=1).float().mean()
    assert abs(rate.item() - 0.6) < 0.03            # an utterance drawn with both widths 0 stays whole


def test_masking_only_in_training():
    torch.manual_seed(3)
    masking = EcapaTdnn(96, channels=32, mask_p=1.0)
    plain = copy.deepcopy(masking)
    plain.mask_p = 0.0
    x = torch.randn(4, 25, 96)
    with torch.no_grad():
        assert torch.equal(masking.eval()(x), plain.eval()(x))
        assert not torch.allclose(masking.train()(x), plain.train()(x))
