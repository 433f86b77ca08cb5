import math

import pytest
import torch

from arguments import EXPERIMENT_ARGS
from trainer.schedule import Schedule, backend_lr, group_lrs, kd_weight

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
    def cosine(e):
        return 1e-6 + (1e-4 - 1e-6) * (1 + math.cos(math.pi * (e - 1) / 100)) / 2

    lrs = {e: group_lrs(e, Schedule.of(ARGS)) for e in (1, 5, 9, 10, 11, 30, 100)}
    assert lrs[1]['backend'] == pytest.approx(1e-4)
    assert lrs[1]['student'] == pytest.approx(1e-5)
    assert lrs[1]['adapter'] == pytest.approx(1e-3)
    assert lrs[5]['student'] == pytest.approx(cosine(5) * 0.5)
    assert lrs[9]['student'] == pytest.approx(cosine(9) * 0.9)
    assert lrs[10]['student'] == pytest.approx(cosine(9) * 0.9 * 0.93)
    assert lrs[11]['student'] == pytest.approx(cosine(9) * 0.9 * 0.93**2)
    assert lrs[30]['student'] == pytest.approx(cosine(9) * 0.9 * 0.93**21)
    for e in lrs:
        assert lrs[e]['backend'] == pytest.approx(cosine(e))
        assert lrs[e]['adapter'] == pytest.approx(10 * cosine(e))
    assert lrs[100]['backend'] == pytest.approx(cosine(100))


def test_demo_schedule_where_the_restart_comes_before_the_student_warm_up_ends():
    """The demo's case, T_0 = 8 < 10 warm-up epochs, over its 8 epochs and 4 more (the first
    restart at epoch 9, the first decayed student LR at 10), each value worked out by hand from
    SPEC.md section 1: back-end 1e-6 + (1e-3 - 1e-6) (1 + cos(pi ((e - 1) mod 8) / 8)) / 2;
    student back-end x e / 10 for e < 10, then the previous epoch's x 0.93; adapter 10 x back-end."""
    args = dict(
        EXPERIMENT_ARGS,
        lr=1e-3,
        lr_min=1e-6,
        T_0=8,
        T_mult=1,
        student_warmup_epochs=10,
        student_lr_decay=0.93,
        adapter_lr_ratio=10.0,
        epoch=8,
    )
    expected = {  # epoch: (back-end, student)
        1: (1.0000000000e-03, 1.0000000000e-04),
        2: (9.6197782649e-04, 1.9239556530e-04),
        3: (8.5369983720e-04, 2.5610995116e-04),
        4: (6.9165037447e-04, 2.7666014979e-04),
        5: (5.0050000000e-04, 2.5025000000e-04),
        6: (3.0934962553e-04, 1.8560977532e-04),
        7: (1.4730016280e-04, 1.0311011396e-04),
        8: (3.9022173511e-05, 3.1217738808e-05),
        9: (1.0000000000e-03, 9.0000000000e-04),  # the back-end restarts; the student is still warming up
        10: (9.6197782649e-04, 8.3700000000e-04),  # 9e-4 x 0.93: from here on the student decays
        11: (8.5369983720e-04, 7.7841000000e-04),
        12: (6.9165037447e-04, 7.2392130000e-04),
    }
    for epoch, (backend, student) in expected.items():
        lrs = group_lrs(epoch, Schedule.of(args))
        assert lrs == pytest.approx({'backend': backend, 'student': student, 'adapter': 10 * backend}, rel=1e-9), epoch
