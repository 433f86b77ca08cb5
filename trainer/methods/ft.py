"""ft, the paper's upper bound: the whole teacher SSL model (every layer, no adapters) fine-tuned
with ECAPA-TDNN for SV, no KD; the student group of the LR schedule is the SSL model."""
from trainer.methods.common import sv_only

ADAPTERS = False
USES_TEACHER = False


def student_layers(args, teacher):
    return teacher.config.num_hidden_layers


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
