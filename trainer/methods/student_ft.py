"""student_ft: the pruned student (the teacher's first num_hidden_layers layers, no adapters)
fine-tuned for SV without KD: set beside oskdft, it shows what the distillation adds."""
from trainer.methods.common import sv_only

ADAPTERS = False
USES_TEACHER = False


def student_layers(args, teacher):
    return args['num_hidden_layers']


def epochs(args):
    return args['epoch']


def stage_epoch(epoch, args):
    return epoch


def new_stage(epoch, args):
    return False


def scored(epoch, args):
    return True


def step(model, teacher, clean, augmented, labels, epoch, args):
    return sv_only(model, augmented, labels)
