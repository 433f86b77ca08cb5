"""student_ft: the pruned student (the teacher's first num_hidden_layers layers, no adapters)
fine-tuned for SV without KD: set beside oskdft, it shows what the distillation adds."""

from trainer.methods.common import epochs, new_stage, paths, scored, stage_epoch, sv_only

__all__ = [
    'ADAPTERS',
    'USES_TEACHER',
    'student_layers',
    'epochs',
    'stage_epoch',
    'new_stage',
    'scored',
    'paths',
    'step',
]
ADAPTERS = False
USES_TEACHER = False


def student_layers(args, teacher):
    return args['num_hidden_layers']


def step(model, teacher, clean, augmented, labels, epoch, args):
    return sv_only(model, augmented, labels)
