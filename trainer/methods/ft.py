"""ft, the paper's upper bound: the whole teacher SSL model (every layer, no adapters) fine-tuned
with ECAPA-TDNN for SV, no KD; the student group of the LR schedule is the SSL model."""

from trainer.methods.common import epochs, new_stage, paths, scored, stage_epoch, sv_only

__all__ = [
    'USES_TEACHER',
    'epochs',
    'stage_epoch',
    'new_stage',
    'scored',
    'paths',
    'step',
]
USES_TEACHER = False


def step(model, teacher, clean, augmented, labels, epoch, args):
    return sv_only(model, augmented, labels)
