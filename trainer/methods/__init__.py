"""The methods of the paper's table, chosen by `method` in arguments.py. Each module has one
surface that the training loop uses:

    USES_TEACHER                    whether the frozen teacher runs (KD)
    epochs(args)                    the epochs of the whole run
    stage_epoch(epoch, args)        the epoch the LR schedule sees (a second stage starts again at 1)
    new_stage(epoch, args)          whether the epoch starts a stage with a fresh optimizer state
    scored(epoch, args)             whether Vox1-O is scored after the epoch (and may pick the best)
    paths(epoch, args)              the paths a step of the epoch runs, of 'kd' and 'sv' (what its log reports)
    step(model, teacher, clean, augmented, labels, epoch, args) -> (loss, LOSS_NAMES values (5,))

The student each one trains (adapters, how many of the teacher's layers, a frozen SSL model) is
models/build.py's STUDENT_SHAPES, so that a checkpoint's model is rebuilt without the training code.
"""

from trainer.methods import frozen, ft, kd_ft, oskdft, student_ft
from trainer.methods.common import LOSS_NAMES

METHODS = {'oskdft': oskdft, 'ft': ft, 'student_ft': student_ft, 'kd_ft': kd_ft, 'frozen': frozen}
__all__ = ['LOSS_NAMES', 'METHODS']
