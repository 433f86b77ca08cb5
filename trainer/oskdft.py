"""The losses of one OS-KDFT training step."""
import torch
import torch.nn.functional as F

from models.ssl import frozen_forward

LOSS_NAMES = ('kd', 'sv', 'total', 'accuracy')


def step_losses(model, teacher, clean, augmented, labels, kd_weight):
    """The frozen teacher on the clean crops; the student's KD path (no adapters) and SV path
    (adapters, ECAPA, AAM) on the augmented crops. Returns (KD loss x kd_weight + SV loss, the
    detached values of LOSS_NAMES (4,))."""
    target = frozen_forward(teacher, clean)                          # (B, T, D)
    kd_hidden, sv_loss, accuracy = model(augmented, labels)          # (B, T, D), (), ()
    kd_loss = F.mse_loss(kd_hidden, target) * kd_weight             # autocast computes it in float32
    total = kd_loss + sv_loss
    return total, torch.stack([kd_loss, sv_loss, total, accuracy.to(total.dtype)]).detach()
