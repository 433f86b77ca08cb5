"""mode=evaluate: the trial lists scored with a checkpoint's model, into the run folder's
results.json, as the end of a training run scores them."""

from data.voxceleb import training_manifest
from evaluation.results import final_evaluation
from evaluation.trials import load_trial_lists
from inference.model import load_model
from utils.telemetry import Telemetry


def evaluate_checkpoint(args, logger, device, state):
    """Rebuilds the model of a loaded checkpoint (`state`) and scores the trial lists (with AS-norm
    against path_train's speakers when asnorm_top_k is set)."""
    model, params = load_model(state, args, logger, device)
    manifest = training_manifest(args, logger) if args['asnorm_top_k'] else None
    trial_lists = load_trial_lists(args, logger, manifest)
    return final_evaluation(
        model, trial_lists, args, device, logger, state['epoch'], params, Telemetry(device), manifest
    )
