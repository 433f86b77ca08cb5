"""What the methods share: the values a step reports, the SV path on its own, and the surface of a
method of one stage (every epoch trains the same way and is scored; the schedule sees it as is)."""

import torch

LOSS_NAMES = ('kd', 'sv', 'total', 'accuracy', 'kd_mse')  # kd: the MSE x the KD weight; kd_mse: unweighted


def sv_only(model, augmented, labels):
    """The SV path alone (adapters on where the student has them): (loss, LOSS_NAMES values (5,))."""
    _, sv_loss, accuracy = model(augmented, labels, paths='sv')
    zero = torch.zeros_like(sv_loss)
    return sv_loss, torch.stack([zero, sv_loss, sv_loss, accuracy.to(sv_loss.dtype), zero]).detach()


def epochs(args):
    return args['epoch']


def stage_epoch(epoch, args):
    return epoch


def new_stage(epoch, args):
    return False


def scored(epoch, args):
    return True


def paths(epoch, args):
    return ('sv',)
