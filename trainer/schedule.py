"""The per-epoch schedules of OS-KDFT: the KD loss weight and the three learning rates.

Epochs are 1-based, as in the paper; every value is a closed-form function of the epoch,
so a resumed run sets exactly the values an uninterrupted one would have.
"""

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """The three learning rates' settings (arguments.py: lr, lr_min, T_0, T_mult,
    student_warmup_epochs, student_lr_decay, adapter_lr_ratio)."""

    lr: float
    lr_min: float
    T_0: int
    T_mult: int
    warmup_epochs: int
    decay: float
    adapter_ratio: float

    @classmethod
    def of(cls, settings):
        return cls(
            settings['lr'],
            settings['lr_min'],
            settings['T_0'],
            settings['T_mult'],
            settings['student_warmup_epochs'],
            settings['student_lr_decay'],
            settings['adapter_lr_ratio'],
        )


def kd_weight(epoch, epochs, scale):
    """KD loss weight: scale x (E - e) / E, falling linearly to 0 at the last epoch."""
    return scale * (epochs - epoch) / epochs


def backend_lr(epoch, lr, lr_min, T_0, T_mult):
    """ECAPA + AAM LR: cosine annealing with warm restarts stepped once per epoch, epoch 1 at lr
    (the value torch's CosineAnnealingWarmRestarts gives after epoch - 1 steps)."""
    t = epoch - 1
    if T_mult == 1:
        t_cur, t_i = t % T_0, T_0
    else:
        n = int(math.log(t / T_0 * (T_mult - 1) + 1, T_mult))
        t_cur, t_i = t - T_0 * (T_mult**n - 1) / (T_mult - 1), T_0 * T_mult**n
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2


def student_lr(epoch, schedule):
    """Student LR: the backend LR x e / W during the warm-up (e < W), then the previous
    epoch's value x decay."""
    s = schedule
    last_warm = min(epoch, s.warmup_epochs - 1)
    lr = backend_lr(last_warm, s.lr, s.lr_min, s.T_0, s.T_mult) * last_warm / s.warmup_epochs
    return lr * s.decay ** (epoch - last_warm)


def group_lrs(epoch, schedule):
    """The LR of each optimizer group in this epoch: {'backend', 'student', 'adapter'}."""
    backend = backend_lr(epoch, schedule.lr, schedule.lr_min, schedule.T_0, schedule.T_mult)
    return {
        'backend': backend,
        'student': student_lr(epoch, schedule),
        'adapter': backend * schedule.adapter_ratio,
    }


def lmft_lrs(stage_epoch, step, steps_per_epoch, args):
    """Each group's LR at step `step` (0-based) of LMFT's epoch `stage_epoch` (1-based), set before
    every step: WeSpeaker's ExponentialDecrease (wespeaker/utils/schedulers.py), lmft_lr falling
    exponentially to lmft_lr_final over the stage's steps, times a linear warm-up over its first epoch
    (warm_up_epoch 1, warm_from_zero). Its first step is at 1 / steps_per_epoch of the warm-up, not at
    0 as WeSpeaker's (a step at LR 0 would only move Adam's moments). One LR for the back-end and the
    SSL model, as WeSpeaker's one parameter group; the adapters keep the method's adapter_lr_ratio."""
    done = (stage_epoch - 1) * steps_per_epoch + step  # steps of the stage before this one
    progress = done / (args['lmft_epochs'] * steps_per_epoch)
    warmup = min(1.0, (done + 1) / steps_per_epoch)
    lr = warmup * args['lmft_lr'] * math.exp(progress * math.log(args['lmft_lr_final'] / args['lmft_lr']))
    return {'backend': lr, 'student': lr, 'adapter': lr * args['adapter_lr_ratio']}
