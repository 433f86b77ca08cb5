"""mode=evaluate: the trial lists scored with a checkpoint's model, into the run folder's
results.json, as the end of a training run scores them."""

import os

from data.voxceleb import training_manifest
from evaluation.results import final_evaluation
from evaluation.trials import load_trial_lists
from inference.model import load_model
from utils.checkpoint import write_checkpoint
from utils.telemetry import Telemetry

CALIBRATED = 'calibrated.pt'  # qmf=true: the checkpoint given, with the calibration fitted for it


def evaluate_checkpoint(args, logger, device, state):
    """Rebuilds the model of a loaded checkpoint (`state`) and scores the trial lists (with AS-norm
    against path_train's speakers when asnorm_top_k is set; calibrated by the checkpoint's QMF when it
    carries one, or by one fitted on path_train's speakers with qmf=true)."""
    model, params = load_model(state, args, logger, device)
    manifest = training_manifest(args, logger) if args['asnorm_top_k'] or args['qmf'] else None
    trial_lists = load_trial_lists(args, logger, manifest)
    calibration = None if args['qmf'] else state.get('qmf')
    if calibration is not None:
        logger.log_text("QMF: the checkpoint's calibration is applied (qmf=true fits a new one on path_train)")
    summary, fitted = final_evaluation(
        model, trial_lists, args, device, logger, state['epoch'], params, Telemetry(device), manifest, None, calibration
    )
    if args['qmf'] and fitted is not None:
        path = os.path.join(logger.run_dir, CALIBRATED)
        write_checkpoint(path, {**state, 'qmf': fitted})
        logger.log_text(f'QMF: the checkpoint with its calibration written to {path} (mode=verify calibrates with it)')
    return summary
