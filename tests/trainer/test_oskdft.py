"""The training step: teacher on the clean crop, both student paths on the augmented crop,
KD loss x (E - e) / E x 100 + SV loss, one backward, one optimizer step."""
import copy

import pytest
import torch
import torch.nn.functional as F

from arguments import EXPERIMENT_ARGS
from models.ssl import load_teacher
from trainer.oskdft import train_epoch
from trainer.trainer import build_model, build_optimizer, set_lrs

NO_REGULARISATION = dict(layerdrop=0.0, mask_time_prob=0.0, hidden_dropout=0.0, attention_dropout=0.0,
                         activation_dropout=0.0, feat_proj_dropout=0.0)
TINY = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
            conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, **NO_REGULARISATION)
ARGS = dict(EXPERIMENT_ARGS, num_hidden_layers=2, ecapa_channels=16, embedding_size=16, spec_mask_p=0.0, epoch=4)


@pytest.fixture
def setup():
    torch.manual_seed(0)
    teacher = load_teacher('tiny', TINY)
    model = build_model(ARGS, teacher, num_classes=5).double()
    for adapter in model.student.adapters():         # non-zero adapters, so the SV path differs from KD
        torch.nn.init.normal_(adapter.up.weight, std=0.1)
    clean = torch.randn(4, 8000, dtype=torch.float64)
    augmented = clean + 0.3 * torch.randn_like(clean)
    labels = torch.tensor([0, 1, 2, 3])
    return teacher.double(), model, (clean, augmented, labels)


def test_one_step_descends_the_sum_of_the_weighted_kd_loss_and_the_sv_loss(setup):
    teacher, model, (clean, augmented, labels) = setup
    reference = copy.deepcopy(model)
    kd_hidden, sv_loss, _ = reference(augmented, labels)
    kd_loss = F.mse_loss(kd_hidden, teacher(clean).last_hidden_state) * 100 * (4 - 1) / 4
    (kd_loss + sv_loss).backward()

    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    sgd = torch.optim.SGD(model.parameters(), lr=1.0)
    losses = train_epoch(model, teacher, [(clean, augmented, labels)], sgd, 1, ARGS, torch.device('cpu'), False)

    assert losses['kd'] == pytest.approx(kd_loss.item(), rel=1e-12)
    assert losses['sv'] == pytest.approx(sv_loss.item(), rel=1e-12)
    assert losses['total'] == pytest.approx(kd_loss.item() + sv_loss.item(), rel=1e-12)
    for name, p in model.named_parameters():
        expected = reference.get_parameter(name).grad
        torch.testing.assert_close(before[name] - p.detach(), expected, rtol=1e-9, atol=1e-12)
    for name, p in teacher.named_parameters():
        assert p.grad is None, name


def test_one_adam_keeps_its_moments_across_epochs_and_takes_the_scheduled_lrs(setup):
    teacher, model, batch = setup
    optimizer = build_optimizer(model)
    assert [group['name'] for group in optimizer.param_groups] == ['backend', 'student', 'adapter']
    adapter_ids = {id(p) for p in model.student.adapter_parameters()}
    assert {id(p) for p in optimizer.param_groups[2]['params']} == adapter_ids
    for epoch in (1, 2):
        lrs = set_lrs(optimizer, epoch, ARGS)
        assert [group['lr'] for group in optimizer.param_groups] == [lrs['backend'], lrs['student'], lrs['adapter']]
        train_epoch(model, teacher, [batch], optimizer, epoch, ARGS, torch.device('cpu'), False)
    first = next(iter(model.backend.parameters()))
    assert optimizer.state[first]['step'].item() == 2
