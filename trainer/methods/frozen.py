"""frozen: what the teacher knows about voices. Its SSL model (every layer) stays as it is, frozen in
eval mode (no dropout, no masking, no gradient); only ECAPA-TDNN and the AAM head train, on its
last hidden state, for SV. Set beside the other methods, it shows how far the teacher's own
features go with the same back-end and data."""

from trainer.methods.common import epochs, new_stage, paths, scored, stage_epoch, sv_only

__all__ = [
    'ADAPTERS',
    'USES_TEACHER',
    'FROZEN_SSL',
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
FROZEN_SSL = True


def student_layers(args, teacher):
    return teacher.config.num_hidden_layers


def step(model, teacher, clean, augmented, labels, epoch, args):
    return sv_only(model, augmented, labels)
