"""The trained system rebuilt from a checkpoint alone, for every mode that uses a trained model
(evaluate, export, embed, verify): the student from its own SSL config kept in the checkpoint, the
adapters and ECAPA-TDNN from the run's settings, then the checkpoint's weights. No teacher is read,
except for checkpoints written before they carried the student's config."""

import math

from models.build import build_model, parameter_counts
from models.ssl import load_teacher
from utils.seed import seed_everything

# the shortest wave the model embeds: two frames of the wav2vec 2.0 CNN (400 + 320 samples), as ECAPA-TDNN's
# statistics pooling takes a variance over frames
MIN_SAMPLES = 720


def load_model(state, args, logger, device):
    """(the SpeakerNet of a loaded checkpoint, in eval mode on device; its parameter counts
    {'teacher', 'student', 'backend'}). The model's settings are the checkpoint's own (args fills
    in keys that older checkpoints lack)."""
    model_args = {**args, **state['args']}
    seed_everything(model_args['seed'])
    teacher = None
    if 'ssl_config' not in state:
        logger.log_text(
            f"checkpoint: written before checkpoints carried the student's SSL config; the student is "
            f'rebuilt through its teacher model_name_or_path={model_args["model_name_or_path"]!r}, '
            f'loaded for that alone (train again, or resume, to write a self-contained checkpoint)'
        )
        teacher = load_teacher(model_args['model_name_or_path'], model_args['tiny_ssl'])
    model = build_model(model_args, teacher, state['num_classes'], ssl_config=state.get('ssl_config'))
    model.load_state_dict(state['model'])
    params = state.get('params') or parameter_counts(teacher, model)
    return model.to(device).eval(), params


def checkpoint_threshold(state):
    """(the score threshold at the EER point of the list that chose the best epoch (Vox1-O, or the
    validation list; best_model=last: Vox1-O) measured on this checkpoint's weights, where
    it came from), or (None, why there is none). A last.pt holds the last weights, while the threshold
    it carries is the best epoch's: it counts only when the two are the same epoch."""
    best = state.get('best', {})
    threshold = best.get('threshold')
    if threshold is None or not math.isfinite(threshold):
        return None, (
            'the checkpoint carries no Vox1-O threshold (written before checkpoints did, or trained without Vox1-O)'
        )
    if best['epoch'] != state['epoch'] or state.get('step', 0) != 0:
        return None, (
            f'the checkpoint holds the weights of epoch {state["epoch"]}, its Vox1-O threshold is that of '
            f"the best epoch {best['epoch']}: use the run's best.pt"
        )
    name = best.get('list', 'Vox1-O')
    return threshold, f'EER point of {name} at epoch {best["epoch"]}, EER {best["eer"]:.2f} %'
