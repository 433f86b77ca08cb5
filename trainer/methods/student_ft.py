"""student_ft: the pruned student (the teacher's first num_hidden_layers layers, no adapters)
fine-tuned for SV without KD: set beside oskdft, it shows what the distillation adds."""

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
