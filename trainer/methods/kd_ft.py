"""kd_ft, the two-step recipe OS-KDFT replaces: first `kd_epochs` of KD only (the student, no
adapters, matches the teacher's last hidden state with a constant kd_weight; the back-end does not
train and nothing is scored), then `epoch` epochs of SV fine-tuning of that student, with the LR
schedule and the optimizer state started afresh, as a second run from the first's weights would."""

import torch
import torch.nn.functional as F

from models.ssl import frozen_forward
from trainer.methods.common import sv_only

USES_TEACHER = True


def epochs(args):
    return args['kd_epochs'] + args['epoch']


def in_kd_stage(epoch, args):
    return epoch <= args['kd_epochs']


def stage_epoch(epoch, args):
    return epoch if in_kd_stage(epoch, args) else epoch - args['kd_epochs']


def new_stage(epoch, args):
    return epoch == args['kd_epochs'] + 1 and args['kd_epochs'] > 0


def scored(epoch, args):
    return not in_kd_stage(epoch, args)


def paths(epoch, args):
    return ('kd',) if in_kd_stage(epoch, args) else ('sv',)


def step(model, teacher, clean, augmented, labels, epoch, args):
    if not in_kd_stage(epoch, args):
        return sv_only(model, augmented, labels)
    target = frozen_forward(teacher, clean, args['normalize_wave'])  # (B, T, D)
    kd_hidden, _, _ = model(augmented, labels, paths='kd')
    mse = F.mse_loss(kd_hidden, target)
    kd_loss = mse * args['kd_weight']
    zero = torch.zeros_like(kd_loss)
    return kd_loss, torch.stack([kd_loss, zero, kd_loss, zero, mse]).detach()
