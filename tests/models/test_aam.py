import math

import pytest
import torch
import torch.nn.functional as F

from models.aam import AAMSoftmax


def cosines(head, emb):
    return F.normalize(emb) @ F.normalize(head.weight).T


def test_margin_zero_is_scaled_cosine_cross_entropy():
    torch.manual_seed(0)
    head = AAMSoftmax(16, 10, margin=0.0, scale=30.0)
    emb, labels = torch.randn(8, 16), torch.randint(0, 10, (8,))
    loss, accuracy = head(emb, labels)
    logits = 30.0 * cosines(head, emb)
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels))
    assert accuracy.item() == (logits.argmax(1) == labels).float().mean().item() * 100


def test_margin_adds_to_the_target_angle_with_fallback_past_pi():
    torch.manual_seed(1)
    margin, scale = 0.2, 30.0
    head = AAMSoftmax(8, 5, margin=margin, scale=scale)
    emb, labels = torch.randn(64, 8), torch.arange(64) % 5
    logits = head.logits(emb, labels)
    cos = cosines(head, emb)
    target = cos[torch.arange(64), labels]
    theta = torch.acos(target.clamp(-1, 1))
    expected = torch.where(
        theta + margin < math.pi, torch.cos(theta + margin), target - math.sin(math.pi - margin) * margin
    )
    torch.testing.assert_close(logits[torch.arange(64), labels], scale * expected, rtol=0, atol=1e-4)
    others = torch.ones_like(cos, dtype=torch.bool)
    others[torch.arange(64), labels] = False
    assert torch.equal(logits[others], scale * cos[others])


def test_fallback_when_theta_plus_margin_passes_pi():
    head = AAMSoftmax(2, 2, margin=0.5, scale=1.0)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    emb = torch.tensor([[-1.0, 0.05]])  # theta close to pi for class 0
    cos = F.normalize(emb)[0, 0]
    logit = head.logits(emb, torch.tensor([0]))[0, 0]
    torch.testing.assert_close(logit, cos - math.sin(math.pi - 0.5) * 0.5)


def test_accuracy_on_plain_cosines_not_margin_logits():
    head = AAMSoftmax(2, 2, margin=0.5, scale=30.0)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    # first: 0.6 rad from class 0, 0.97 from class 1: cos 0.825 > 0.565 (right), but the target's
    # logit with the margin, 30 cos(1.1) = 13.6, is below class 1's 16.9 (wrong)
    # second: on class 0 but labelled 1: wrong either way
    emb = torch.tensor([[math.cos(0.6), math.sin(0.6)], [1.0, 0.0]])
    labels = torch.tensor([0, 1])
    assert head.logits(emb, labels)[0].argmax() == 1
    assert head(emb, labels)[1].item() == 50.0
    head_without_margin = AAMSoftmax(2, 2, margin=0.0)
    head_without_margin.load_state_dict(head.state_dict())
    assert head_without_margin(emb, labels)[1].item() == 50.0


def test_class_weights_give_torch_weighted_cross_entropy():
    torch.manual_seed(2)
    weights = torch.tensor([1.0, 4.0, 0.5, 2.0], dtype=torch.float64)
    weighted = AAMSoftmax(8, 4, class_weights=weights)
    plain = AAMSoftmax(8, 4)
    plain.load_state_dict(weighted.state_dict())
    emb, labels = torch.randn(12, 8), torch.tensor([0, 1, 1, 2, 3, 3, 3, 0, 1, 2, 2, 1])
    loss, _ = weighted(emb, labels)
    nll = F.cross_entropy(weighted.logits(emb, labels), labels, reduction='none')
    w = weights.float()[labels]
    torch.testing.assert_close(loss, (w * nll).sum() / w.sum())
    assert not torch.allclose(loss, plain(emb, labels)[0])
    assert set(weighted.state_dict()) == {'weight'}  # checkpoints load with or without weights


@pytest.mark.parametrize('emb_dtype', [torch.float32, torch.bfloat16])
def test_cosines_and_loss_stay_float32_under_bf16_autocast(emb_dtype):
    """x scale 30 a bf16 cosine (8 bits) would move a logit by ~0.1: under autocast the cosines are
    float32 and equal the float64 ones to float32 rounding, far below bf16's step (~4e-3 near 1)."""
    torch.manual_seed(3)
    head = AAMSoftmax(192, 50)
    emb, labels = torch.randn(16, 192).to(emb_dtype), torch.arange(16) % 50
    expected = F.normalize(emb.double()) @ F.normalize(head.weight.double()).T  # (B, num_classes)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        cosine = head.cosines(emb)
        loss, _ = head(emb, labels)
    assert cosine.dtype == torch.float32 and loss.dtype == torch.float32
    torch.testing.assert_close(cosine.double(), expected, rtol=0, atol=1e-6)
    logits = 30.0 * expected
    target = torch.arange(16), labels
    logits[target] = 30.0 * torch.cos(torch.acos(expected[target]) + 0.2)  # every angle + 0.2 below pi here
    expected_loss = F.cross_entropy(logits, labels)
    assert loss.item() == pytest.approx(expected_loss.item(), rel=1e-5)
