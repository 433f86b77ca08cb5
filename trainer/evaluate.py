"""Enrollment and scoring of trial lists: full-utterance + segment embeddings, then EER / minDCF.

With several processes every rank embeds its own shard of the utterances, rank 0 gathers them,
scores, and sends the results to every rank, so each rank takes the same decisions afterwards.
"""
import numpy as np
import torch
from torch.utils.data import DataLoader

from data.audio import FRAME_SAMPLES
from data.datasets import EnrollSet
from trainer.scoring import score_trials, utterance_vectors
from utils import distributed
from utils.metrics import compute_metrics
from utils.progress import progress_bar

NOT_SCORED = {'eer': float('nan'), 'min_dcf_0.05': float('nan'), 'min_dcf_0.01': float('nan')}


def trial_utterances(trial_lists):
    """The sorted union of the utterances of several trial lists, each embedded once."""
    return sorted({key for trials in trial_lists.values() for key in trials.utterances()})


def shard(keys, rank, world):
    """The keys rank embeds: every world-th from position rank (disjoint, together all of them)."""
    return keys[rank::world]


@torch.no_grad()
def embed_utterances(model, root, keys, num_samples, num_seg, device, num_workers=0, show_progress=True):
    """Embeds every utterance twice, whole and as num_seg evenly spaced segments, each rank its
    shard. Returns (unit full embeddings (N, E), mean unit segment embeddings (N, E)) on the CPU,
    in the order of keys, on rank 0; None on the other ranks."""
    was_training = model.training
    model.eval()
    rank, world = distributed.rank(), distributed.world_size()
    loader = DataLoader(EnrollSet(root, shard(keys, rank, world), num_samples, num_seg), batch_size=1,
                        num_workers=num_workers, generator=torch.Generator())
    full, segments = [], []
    for wave, segs, _ in progress_bar(loader, 'enroll', show_progress):
        full.append(model.embed(wave.to(device)).float().cpu())           # (1, E)
        segments.append(model.embed(segs[0].to(device)).float().cpu())    # (S, E)
    model.train(was_training)
    mine = utterance_vectors(torch.cat(full), torch.stack(segments)) if full else None
    gathered = distributed.gather_objects(mine)
    if gathered is None:
        return None
    return tuple(interleave([None if part is None else part[i] for part in gathered], len(keys)) for i in (0, 1))


def interleave(shards, count):
    """Undoes `shard`: the rows of rank r's shard go to positions r, r + world, ... (N, E).
    A rank with no utterance (more ranks than utterances) sent None."""
    first = next(rows for rows in shards if rows is not None)
    out = torch.empty(count, first.shape[1], dtype=first.dtype)
    for rank, rows in enumerate(shards):
        if rows is not None:
            out[rank::len(shards)] = rows
    return out


def score_lists(trial_lists, keys, full, seg_mean):
    """{name: {'eer', 'min_dcf_0.05', 'min_dcf_0.01', 'trials', 'scores'}}. A list with a
    non-finite score (a diverged model) gets NaN metrics and 'nonfinite': their count."""
    results = {}
    for name, trials in trial_lists.items():
        enroll_idx, test_idx = trials.indices(keys)
        scores = score_trials(full, seg_mean, enroll_idx, test_idx)
        nonfinite = int(np.count_nonzero(~np.isfinite(scores)))
        metrics = dict(NOT_SCORED, nonfinite=nonfinite) if nonfinite else compute_metrics(scores, trials.labels)
        results[name] = {**metrics, 'trials': len(trials.labels), 'scores': scores}
    return results


def evaluate(model, trial_lists, root, args, device, show_progress=True):
    """Scores each trial list with one shared enrollment of their utterances; the same results
    on every rank. trial_lists: {name: Trials}."""
    keys = trial_utterances(trial_lists)
    num_samples = args['num_test_frames'] * FRAME_SAMPLES
    vectors = embed_utterances(model, root, keys, num_samples, args['num_seg'], device, args['num_workers'],
                               show_progress)
    results = score_lists(trial_lists, keys, *vectors) if vectors is not None else None
    return distributed.broadcast_object(results)
