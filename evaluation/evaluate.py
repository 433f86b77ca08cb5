"""Enrollment and scoring of trial lists: full-utterance + segment embeddings, then EER / minDCF.

With several processes every rank embeds its own shard of the utterances, rank 0 gathers them,
scores, and sends the results to every rank, so each rank takes the same decisions afterwards.
"""

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from data.audio import FRAME_SAMPLES, SAMPLE_RATE
from data.datasets import EnrollSet, collate_enrollment
from evaluation.asnorm import apply_asnorm, cohort_vectors, utterance_stats
from evaluation.qmf import (
    calibration_metrics,
    calibration_trials,
    fit_qmf,
    new_calibration,
    quality_features,
    trial_llrs,
    utterance_quality,
)
from evaluation.scoring import score_trials, utterance_vectors
from utils import distributed
from utils.metrics import compute_metrics, eer_threshold
from utils.progress import progress_bar

NOT_SCORED = {
    'eer': float('nan'),
    'min_dcf_0.05': float('nan'),
    'min_dcf_0.01': float('nan'),
    'eer_threshold': float('nan'),
}


@dataclass(frozen=True)
class EmbeddingRecipe:
    """How an utterance is embedded for scoring: the full utterance and num_seg segments of
    segment_frames frames (10 ms each), embedded as the original code did with like_original;
    batch_seconds of audio per forward, padding included; loader workers (on a GPU)."""

    segment_frames: int = 300
    num_seg: int = 5
    batch_seconds: float = 60.0
    like_original: bool = False
    num_workers: object = 'auto'

    @classmethod
    def of(cls, settings):
        """The recipe a run's settings (arguments.py) give."""
        return cls(
            settings['num_test_frames'],
            settings['num_seg'],
            settings['eval_batch_seconds'],
            settings['eval_segments_like_original'],
            settings['num_workers'],
        )


def trial_utterances(trial_lists):
    """The sorted union of the utterances of several trial lists, each embedded once."""
    return sorted({key for trials in trial_lists.values() for key in trials.utterances()})


def shard(keys, rank, world):
    """The keys rank embeds: every world-th from position rank (disjoint, together all of them)."""
    return keys[rank::world]


def plan_batches(lengths, num_samples, num_seg, max_samples):
    """Groups of utterance indices that go through the model together, longest utterances first.
    A group's full waves padded to its longest (count x longest) and its segments
    (count x num_seg x num_samples) each stay within max_samples, so memory is capped; an utterance
    longer than that alone still forms a group of its own."""
    order = np.argsort(-np.asarray(lengths), kind='stable')
    groups, group = [], []
    for i in order:
        longest = lengths[group[0]] if group else lengths[i]
        count = len(group) + 1
        if group and max(count * longest, count * num_seg * num_samples) > max_samples:
            groups.append(group)
            group = []
        group.append(int(i))
    return groups + [group] if group else groups


def embed_full(model, waves, lengths):
    """Full-utterance embeddings of a zero-padded group (B, N) -> (B, E), in one forward: padding
    leaves every embedding as the utterance alone gives it (SpeakerNet.embed with lengths)."""
    if len(waves) == 1:
        return model.embed(waves)
    return model.embed(waves, lengths.to(waves.device))


def embed_segments(model, segs, num_seg, like_original=False):
    """Segment embeddings of a group of utterances, (B * num_seg, L) -> (B * num_seg, E), adapters on
    every segment. like_original: as the original code embedded them, its training-mode split run on
    each utterance's batch of num_seg segments: the first num_seg // 2 (segments 1-2 of 5) without
    adapters, the rest (3-5) with them; here in one forward, every utterance's plain segments first
    (one segment: all with adapters, as there)."""
    if not like_original:
        return model.embed(segs)
    rows = torch.arange(len(segs), device=segs.device).view(-1, num_seg)  # (B, S)
    plain = num_seg // 2
    order = torch.cat([rows[:, :plain].flatten(), rows[:, plain:].flatten()])
    emb = model.embed(segs[order], sv_from=rows.shape[0] * plain)  # (B * S, E), in that order
    return emb[torch.argsort(order)]


@torch.no_grad()
def embed_utterances(
    model,
    root,
    keys,
    num_samples,
    num_seg,
    device,
    num_workers=0,
    show_progress=True,
    max_samples=None,
    segments_like_original=False,
):
    """Embeds every utterance twice, whole and as num_seg evenly spaced segments, each rank its
    shard, in groups of max_samples of audio (plan_batches; None: one utterance at a time);
    segments_like_original: the segments as embed_segments's like_original.
    Returns (unit full embeddings (N, E), mean unit segment embeddings (N, E)) on the CPU, in the
    order of keys, on rank 0; None on the other ranks."""
    was_training = model.training
    model.eval()
    rank, world = distributed.rank(), distributed.world_size()
    dataset = EnrollSet(root, shard(keys, rank, world), num_samples, num_seg)
    groups = (
        [[i] for i in range(len(dataset))]
        if max_samples is None
        else plan_batches(dataset.lengths(), num_samples, num_seg, max_samples)
    )
    loader = DataLoader(
        dataset,
        batch_sampler=groups,
        num_workers=num_workers,
        collate_fn=collate_enrollment,
        generator=torch.Generator(),
    )
    full = segments = None
    for waves, lengths, segs, index in progress_bar(loader, 'enroll', show_progress):
        full_emb = embed_full(model, waves.to(device), lengths).float().cpu()  # (B, E)
        seg_emb = embed_segments(model, segs.to(device), num_seg, segments_like_original).float().cpu()  # (B * S, E)
        if full is None:
            full = torch.empty(len(dataset), full_emb.shape[1])
            segments = torch.empty(len(dataset), num_seg, full_emb.shape[1])
        full[index] = full_emb
        segments[index] = seg_emb.view(len(index), num_seg, -1)
    model.train(was_training)
    mine = utterance_vectors(full, segments) if full is not None else None
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
            out[rank :: len(shards)] = rows
    return out


def list_metrics(scores, labels):
    """EER / minDCFs of one list's scores and the score threshold at the EER point (what mode=verify
    decides with); NaN metrics and 'nonfinite': their count when a score is not finite (a diverged model)."""
    nonfinite = int(np.count_nonzero(~np.isfinite(scores)))
    if nonfinite:
        return dict(NOT_SCORED, nonfinite=nonfinite)
    return {**compute_metrics(scores, labels), 'eer_threshold': eer_threshold(scores, labels)}


def score_lists(trial_lists, keys, full, seg_mean, cohort=None, top_k=0, calibration=None, seconds=None):
    """{name: {'eer', 'min_dcf_0.05', 'min_dcf_0.01', 'trials', 'scores'}}. With a cohort
    (cohort_vectors of training speakers) and top_k, each list also gets 'asnorm': its metrics
    after adaptive s-norm, and 'asnorm_scores'. With a calibration (evaluation.qmf's) and the
    utterances' durations in seconds (N,), each list also gets 'qmf': the metrics of its calibrated
    scores (LLRs), with the actual DCFs and Cllr, and 'qmf_scores'."""
    stats = utterance_stats(full, seg_mean, *cohort, top_k) if cohort is not None else None
    quality = utterance_quality(calibration, full, seg_mean, seconds) if calibration is not None else None
    results = {}
    for name, trials in trial_lists.items():
        enroll_idx, test_idx = trials.indices(keys)
        scores = score_trials(full, seg_mean, enroll_idx, test_idx)
        results[name] = {**list_metrics(scores, trials.labels), 'trials': len(trials.labels), 'scores': scores}
        if stats is not None:
            normalised = apply_asnorm(scores, enroll_idx, test_idx, *stats)
            results[name]['asnorm'] = {
                **list_metrics(normalised, trials.labels),
                'top_k': top_k,
                'cohort': len(cohort[0]),
            }
            results[name]['asnorm_scores'] = normalised
        if quality is not None:
            llrs = trial_llrs(calibration, scores, quality, enroll_idx, test_idx)
            calibrated = list_metrics(llrs, trials.labels)
            if not calibrated.get('nonfinite'):
                calibrated.update(calibration_metrics(llrs, trials.labels))
            results[name]['qmf'] = calibrated
            results[name]['qmf_scores'] = llrs
    return results


def training_cohort(model, manifest, recipe, device, seed, utterances_per_speaker, show_progress=True):
    """AS-norm's cohort: every training speaker as the mean of utterances_per_speaker of its
    utterances (drawn with the run's seed), embedded as test utterances are (recipe).
    (cohort_full, cohort_seg) (C, D) each on rank 0, None on the others."""
    rng = np.random.default_rng([seed, 7])
    chosen = np.concatenate(
        [
            rng.permutation(np.flatnonzero(manifest.labels == speaker))[:utterances_per_speaker]
            for speaker in range(len(manifest.speakers))
        ]
    )
    keys = [os.path.relpath(manifest.paths[i], manifest.root) for i in chosen]
    vectors = embed_as_set(model, manifest.root, keys, recipe, device, show_progress)
    if vectors is None:
        return None
    return cohort_vectors(*vectors, manifest.labels[chosen], len(manifest.speakers))


def fit_calibration(model, manifest, cohort, args, device, show_progress=True):
    """QMF's calibration (evaluation.qmf), fitted on qmf_trials seeded trials of training speakers
    (calibration_trials) scored with the model as test trials are, against the cohort (training_cohort's)
    that it keeps for the imposter means; each calibration utterance leaves its own speaker out of them.
    On rank 0; None on the others."""
    enroll, test, target = calibration_trials(manifest.labels, args['qmf_trials'], args['seed'])
    used, inverse = np.unique(np.concatenate([enroll, test]), return_inverse=True)  # (U,), (2M,)
    keys = [os.path.relpath(manifest.paths[i], manifest.root) for i in used]
    vectors = embed_as_set(model, manifest.root, keys, EmbeddingRecipe.of(args), device, show_progress)
    if vectors is None:
        return None
    enroll_idx, test_idx = inverse[: len(enroll)], inverse[len(enroll) :]
    calibration = new_calibration(cohort, args)
    seconds = manifest.lengths[used] / SAMPLE_RATE
    quality = utterance_quality(calibration, *vectors, seconds, own=manifest.labels[used])
    features = quality_features(score_trials(*vectors, enroll_idx, test_idx), quality, enroll_idx, test_idx)
    return {**calibration, **fit_qmf(features, target), 'utterances': len(used)}


def utterance_seconds(root, keys):
    """The duration of each utterance in seconds (N,), from the headers."""
    return EnrollSet(root, keys, 0, 0).lengths() / SAMPLE_RATE


def embed_as_set(model, root, keys, recipe, device, show_progress):
    """embed_utterances by an EmbeddingRecipe. Reading a test file costs little beside embedding
    it, so loader workers keep a GPU fed, but on a CPU they take cores from the model (2 workers:
    25-30 % fewer utterances/s on 2 cores): there files are read in the process itself."""
    workers = distributed.data_workers(recipe.num_workers) if device.type == 'cuda' else 0
    return embed_utterances(
        model,
        root,
        keys,
        recipe.segment_frames * FRAME_SAMPLES,
        recipe.num_seg,
        device,
        workers,
        show_progress,
        round(recipe.batch_seconds * SAMPLE_RATE),
        recipe.like_original,
    )


def evaluate(model, trial_lists, root, recipe, device, show_progress=True, cohort=None, top_k=0, calibration=None):
    """Scores each trial list with one shared enrollment of their utterances (embedded by recipe);
    the same results on every rank. trial_lists: {name: Trials}; cohort: training_cohort's, for
    AS-norm over the top_k closest cohort speakers (0: no AS-norm); calibration: fit_calibration's,
    for QMF."""
    keys = trial_utterances(trial_lists)
    if not keys:
        return {}  # every list left out
    vectors = embed_as_set(model, root, keys, recipe, device, show_progress)
    results = None
    if vectors is not None:
        seconds = utterance_seconds(root, keys) if calibration is not None else None
        results = score_lists(trial_lists, keys, *vectors, cohort, top_k, calibration, seconds)
    return distributed.broadcast_object(results)
