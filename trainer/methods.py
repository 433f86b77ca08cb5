"""The methods of the paper's table, each a small record chosen once by `method` (arguments.py).

A method is one or more stages of the same training loop. A stage trains for its epochs with one
step function; the loop starts each stage with a fresh optimizer and its own LR schedule (epoch 1
again), from the weights the stage before left, as a second run started from the first's weights
would (kd_ft's KD stage, then its fine-tuning). A stage that does not train SV (KD only) is not
scored and leaves the back-end out of its steps.

    step(model, teacher, clean, augmented, labels, epoch) -> (loss, LOSS_NAMES values (5,))

epoch is the stage's own, 1-based. The student each method trains (adapters, how many of the
teacher's layers, a frozen SSL model) is models/build.py's STUDENT_SHAPES, so that a checkpoint's
model is rebuilt without the training code.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.ssl import frozen_forward
from trainer.schedule import kd_weight, lmft_lrs

LOSS_NAMES = ('kd', 'sv', 'total', 'accuracy', 'kd_mse')  # kd: the MSE x the KD weight; kd_mse: unweighted


@dataclass(frozen=True)
class Stage:
    epochs: int
    step: Callable
    sv: bool = True  # trains SV: scored after each epoch (and may pick the best); False: KD only
    paths: Callable = lambda epoch: ('sv',)  # the paths a step of the epoch runs, of 'kd' and 'sv' (its log's)
    # large-margin fine-tuning (LMFT) only: it starts from the best model of the stages before, its own
    # best model is kept apart (lmft.pt, results.json's 'lmft'), its metrics named lmft/...
    lmft: bool = False
    margin: float = None  # the AAM margin through the stage; None: aam_margin
    crop_seconds: float = None  # the training crops; None: num_train_frames x 10 ms
    batch_size: int = None  # the global batch; None: batch_size
    lrs: Callable = None  # (stage_epoch, step, steps_per_epoch) -> {group: LR}, set before every
    # step; None: schedule.group_lrs, set once per epoch


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    uses_teacher: bool  # the frozen teacher runs (KD); otherwise it is only the student's starting point
    own_stages: Callable  # args -> (Stage, ...), the method's own

    def stages(self, args):
        """The method's own stages, then LMFT's when lmft_epochs > 0."""
        return self.own_stages(args) + ((lmft_stage(args),) if args['lmft_epochs'] > 0 else ())

    def epochs(self, args):
        return sum(stage.epochs for stage in self.stages(args))


def locate(stages, epoch):
    """(index of the stage, the stage's own epoch) of the run's epoch `epoch` (1-based)."""
    for index, stage in enumerate(stages):
        if epoch <= stage.epochs:
            return index, epoch
        epoch -= stage.epochs
    raise ValueError(f'epoch {epoch} is past the run')


def sv_step(model, augmented, labels):
    """The SV path alone (adapters on where the student has them): (loss, LOSS_NAMES values (5,))."""
    _, sv_loss, accuracy = model(augmented, labels, paths='sv')
    zero = torch.zeros_like(sv_loss)
    return sv_loss, torch.stack([zero, sv_loss, sv_loss, accuracy.to(sv_loss.dtype), zero]).detach()


def fine_tuning(args):
    """SV fine-tuning of the model as built, no KD (ft, student_ft, frozen, kd_ft's second stage)."""

    def step(model, teacher, clean, augmented, labels, epoch):
        return sv_step(model, augmented, labels)

    return Stage(args['epoch'], step)


def oskdft_stages(args):
    """One stage of `epoch` epochs; the KD weight falls to 0 at the last epoch, whose step is then
    the SV path alone, the teacher not run (the KD path's gradient would be zero)."""

    def weight(epoch):
        return kd_weight(epoch, args['epoch'], args['kd_weight'])

    def step(model, teacher, clean, augmented, labels, epoch):
        if weight(epoch) == 0:
            return sv_step(model, augmented, labels)
        return step_losses(model, teacher, clean, augmented, labels, weight(epoch), args['normalize_wave'])

    return (Stage(args['epoch'], step, paths=lambda epoch: ('kd', 'sv') if weight(epoch) > 0 else ('sv',)),)


def step_losses(model, teacher, clean, augmented, labels, weight, normalize=False):
    """OS-KDFT's step at KD weight `weight`: the frozen teacher sees the clean crop; the student runs
    twice over one CNN front end on the augmented crop, the KD path (no adapters) matching the
    teacher's last hidden state, the SV path (adapters, ECAPA-TDNN, AAM-softmax). Returns (KD loss x
    weight + SV loss, the detached values of LOSS_NAMES (5,)). normalize: the teacher's input
    normalised as the student's is (SpeakerNet.normalize_wave)."""
    target = frozen_forward(teacher, clean, normalize)  # (B, T, D)
    kd_hidden, sv_loss, accuracy = model(augmented, labels)  # (B, T, D), (), ()
    mse = F.mse_loss(kd_hidden, target)  # autocast computes it in float32
    kd_loss = mse * weight
    total = kd_loss + sv_loss
    return total, torch.stack([kd_loss, sv_loss, total, accuracy.to(total.dtype), mse]).detach()


def kd_ft_stages(args):
    """`kd_epochs` of KD only (the student, no adapters, matches the teacher's last hidden state
    with a constant kd_weight; the back-end does not train and nothing is scored), then `epoch`
    epochs of SV fine-tuning of that student."""

    def kd_step(model, teacher, clean, augmented, labels, epoch):
        target = frozen_forward(teacher, clean, args['normalize_wave'])  # (B, T, D)
        kd_hidden, _, _ = model(augmented, labels, paths='kd')
        mse = F.mse_loss(kd_hidden, target)
        kd_loss = mse * args['kd_weight']
        zero = torch.zeros_like(kd_loss)
        return kd_loss, torch.stack([kd_loss, zero, kd_loss, zero, mse]).detach()

    kd = Stage(args['kd_epochs'], kd_step, sv=False, paths=lambda epoch: ('kd',))
    return ((kd,) if args['kd_epochs'] > 0 else ()) + (fine_tuning(args),)


def lmft_stage(args):
    """Large-margin fine-tuning (docs/lmft.md): the SV path alone (the teacher not run; whatever the
    method's SV path trains, trains), longer crops at a smaller batch, a larger AAM margin and its own
    LR schedule, from the best model of the method's stages."""
    return Stage(
        args['lmft_epochs'],
        fine_tuning(args).step,
        lmft=True,
        margin=args['lmft_margin'],
        crop_seconds=args['lmft_seconds'],
        batch_size=args['lmft_batch_size'] or args['batch_size'] // 2,
        lrs=lambda stage_epoch, step, steps_per_epoch: lmft_lrs(stage_epoch, step, steps_per_epoch, args),
    )


def one_stage(args):
    return (fine_tuning(args),)


METHODS = {
    method.name: method
    for method in (
        Method('oskdft', 'KD and SV fine-tuning in one step (the paper)', True, oskdft_stages),
        Method(
            'ft',
            "the whole teacher SSL model (every layer, no adapters) fine-tuned for SV, no KD (the paper's upper "
            'bound; the student group of the LR schedule is the SSL model)',
            False,
            one_stage,
        ),
        Method(
            'student_ft',
            "the pruned student (the teacher's first num_hidden_layers layers, no adapters) fine-tuned for SV "
            'without KD (what the distillation adds)',
            False,
            one_stage,
        ),
        Method(
            'kd_ft', 'KD first, then SV fine-tuning of the distilled student (the two-step recipe)', True, kd_ft_stages
        ),
        Method(
            'frozen',
            "the teacher's SSL model frozen in eval mode (no dropout, no masking, no gradient); only ECAPA-TDNN "
            "and the AAM head train on its last hidden state (what the teacher's own features know)",
            False,
            one_stage,
        ),
    )
}
