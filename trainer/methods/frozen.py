"""frozen: what the teacher knows about voices. Its SSL model (every layer) stays as it is, frozen in
eval mode (no dropout, no masking, no gradient); only ECAPA-TDNN and the AAM head train, on its
last hidden state, for SV. Set beside the other methods, it shows how far the teacher's own
features go with the same back-end and data. ft's model and step, with the SSL model frozen."""

from trainer.methods.common import epochs, new_stage, paths, scored, stage_epoch
from trainer.methods.ft import USES_TEACHER, step

__all__ = [
    'USES_TEACHER',
    'epochs',
    'stage_epoch',
    'new_stage',
    'scored',
    'paths',
    'step',
]
