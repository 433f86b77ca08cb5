"""OS-KDFT: KD and SV fine-tuning in one step. The frozen teacher sees the clean crop; the student
runs twice over one CNN front end on the augmented crop, the KD path (no adapters) matching the
teacher's last hidden state, the SV path (adapters, ECAPA-TDNN, AAM-softmax); one backward of
KD x weight + SV. In the last epoch the KD weight is 0: its step is the SV path alone, and the
teacher is not run (the KD path's gradient would be zero)."""

import torch
import torch.nn.functional as F

from models.ssl import frozen_forward
from trainer.methods.common import epochs, new_stage, scored, stage_epoch, sv_only
from trainer.schedule import kd_weight

__all__ = [
    'USES_TEACHER',
    'epochs',
    'stage_epoch',
    'new_stage',
    'scored',
    'paths',
    'step',
]
USES_TEACHER = True


def paths(epoch, args):
    return ('kd', 'sv') if kd_weight(epoch, args['epoch'], args['kd_weight']) > 0 else ('sv',)


def step(model, teacher, clean, augmented, labels, epoch, args):
    """Returns (KD loss x the epoch's weight + SV loss, the detached values of LOSS_NAMES (5,))."""
    weight = kd_weight(epoch, args['epoch'], args['kd_weight'])
    if weight == 0:
        return sv_only(model, augmented, labels)
    return step_losses(model, teacher, clean, augmented, labels, weight, args['normalize_wave'])


def step_losses(model, teacher, clean, augmented, labels, weight, normalize=False):
    """The step's losses at KD weight `weight`; normalize: the teacher's input normalised as the
    student's is (SpeakerNet.normalize_wave)."""
    target = frozen_forward(teacher, clean, normalize)  # (B, T, D)
    kd_hidden, sv_loss, accuracy = model(augmented, labels)  # (B, T, D), (), ()
    mse = F.mse_loss(kd_hidden, target)  # autocast computes it in float32
    kd_loss = mse * weight
    total = kd_loss + sv_loss
    return total, torch.stack([kd_loss, sv_loss, total, accuracy.to(total.dtype), mse]).detach()
