import math

import pytest
import torch

from arguments import EXPERIMENT_ARGS
from trainer.schedule import backend_lr, group_lrs, kd_weight

ARGS = dict(EXPERIMENT_ARGS)


def torch_backend_lrs(epochs, lr, lr_min, T_0, T_mult):
    """The LR torch's CosineAnnealingWarmRestarts gives at epochs 1..epochs, stepped once per epoch."""
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0, T_mult, lr_min)
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        scheduler.step()
    return lrs


def test_kd_weight_falls_linearly_to_zero():
    assert kd_weight(1, 100, 100.0) == pytest.approx(99.0)
    assert kd_weight(50, 100, 100.0) == pytest.approx(50.0)
    assert kd_weight(100, 100, 100.0) == 0.0
    assert kd_weight(3, 12, 100.0) == pytest.approx(75.0)


@pytest.mark.parametrize('T_0, T_mult', [(100, 1), (7, 1), (5, 2), (3, 3)])
def test_backend_lr_equals_torch_warm_restarts(T_0, T_mult):
    expected = torch_backend_lrs(120, 1e-4, 1e-6, T_0, T_mult)
    ours = [backend_lr(e, 1e-4, 1e-6, T_0, T_mult) for e in range(1, 121)]
    assert ours == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_paper_schedule_at_chosen_epochs():
    cosine = lambda e: 1e-6 + (1e-4 - 1e-6) * (1 + math.cos(math.pi * (e - 1) / 100)) / 2
    lrs = {e: group_lrs(e, ARGS) for e in (1, 5, 9, 10, 11, 30, 100)}
    assert lrs[1]['backend'] == pytest.approx(1e-4)
    assert lrs[1]['student'] == pytest.approx(1e-5)
    assert lrs[1]['adapter'] == pytest.approx(1e-3)
    assert lrs[5]['student'] == pytest.approx(cosine(5) * 0.5)
    assert lrs[9]['student'] == pytest.approx(cosine(9) * 0.9)
    assert lrs[10]['student'] == pytest.approx(cosine(9) * 0.9 * 0.93)
    assert lrs[11]['student'] == pytest.approx(cosine(9) * 0.9 * 0.93 ** 2)
    assert lrs[30]['student'] == pytest.approx(cosine(9) * 0.9 * 0.93 ** 21)
    for e in lrs:
        assert lrs[e]['backend'] == pytest.approx(cosine(e))
        assert lrs[e]['adapter'] == pytest.approx(10 * cosine(e))
    assert lrs[100]['backend'] == pytest.approx(cosine(100))
