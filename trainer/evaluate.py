"""Enrollment and scoring of trial lists: full-utterance + segment embeddings, then EER / minDCF."""
import torch
from torch.utils.data import DataLoader

from data.audio import FRAME_SAMPLES
from data.datasets import EnrollSet
from trainer.scoring import score_trials, utterance_vectors
from utils.metrics import compute_metrics
from utils.progress import progress_bar


def trial_utterances(trial_lists):
    """The sorted union of the utterances of several trial lists, each embedded once."""
    return sorted({key for trials in trial_lists.values() for key in trials.utterances()})


@torch.no_grad()
def embed_utterances(model, root, keys, num_samples, num_seg, device, num_workers=0, show_progress=True):
    """Embeds every utterance twice: whole, and as num_seg evenly spaced segments.
    Returns (unit full embeddings (N, E), mean unit segment embeddings (N, E)) on the CPU."""
    was_training = model.training
    model.eval()
    loader = DataLoader(EnrollSet(root, keys, num_samples, num_seg), batch_size=1,
                        num_workers=num_workers)
    full, segments = [], []
    for wave, segs, _ in progress_bar(loader, 'enroll', show_progress):
        full.append(model.embed(wave.to(device)).float().cpu())           # (1, E)
        segments.append(model.embed(segs[0].to(device)).float().cpu())    # (S, E)
    model.train(was_training)
    return utterance_vectors(torch.cat(full), torch.stack(segments))


def evaluate(model, trial_lists, root, args, device, show_progress=True):
    """Scores each trial list with one shared enrollment of their utterances.
    trial_lists: {name: Trials}. Returns {name: {'eer', 'min_dcf_0.05', 'min_dcf_0.01', 'trials', 'scores'}}."""
    keys = trial_utterances(trial_lists)
    num_samples = args['num_test_frames'] * FRAME_SAMPLES
    full, seg_mean = embed_utterances(model, root, keys, num_samples, args['num_seg'], device, args['num_workers'],
                                      show_progress)
    results = {}
    for name, trials in trial_lists.items():
        enroll_idx, test_idx = trials.indices(keys)
        scores = score_trials(full, seg_mean, enroll_idx, test_idx)
        results[name] = {**compute_metrics(scores, trials.labels), 'trials': len(trials.labels),
                         'scores': scores}
    return results
