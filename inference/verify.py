"""mode=verify: are two recordings of the same speaker? The score of evaluation's recipe, and the
decision at the threshold of the checkpoint (the EER point of Vox1-O measured in training) or at
threshold=X. A checkpoint carrying a QMF calibration (qmf=true) turns the score into a log-likelihood
ratio and decides at the Bayes threshold log((1 - p) / p) of the target prior p_target."""

import math
import os

import numpy as np

from data.audio import SAMPLE_RATE, AudioError, audio_length
from evaluation.evaluate import EmbeddingRecipe
from evaluation.qmf import llr_threshold, posterior, trial_llrs, utterance_quality
from evaluation.scoring import score_trials
from inference.embed import check_files, embed_vectors
from inference.model import checkpoint_threshold, load_model

SIDES = ('enroll', 'test')


def read_threshold(args):
    """threshold=X as a number, or None when it is not given."""
    if args['threshold'] is None:
        return None
    try:
        value = float(args['threshold'])
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f'threshold={args["threshold"]!r}: expected a number, the score from which to accept')
    return value


def check_pair(args):
    """The notes on the enroll and test files that are read converted (another rate, several
    channels), once each, when both can be embedded; else a user error naming the argument. From the
    headers only: main checks them before anything is written."""
    notes = []
    for side in SIDES:
        if not args[side]:
            raise ValueError(f'{side} is not set: mode=verify needs enroll=FILE and test=FILE')
        _, bad, converted = check_files(os.getcwd(), [args[side]], side)
        if bad:
            raise AudioError(f'{side}: {bad[args[side]]}')
        notes += converted
    return notes


def verify_checkpoint(args, logger, device, state):
    """Scores enroll against test and decides; prints both, writes them to results.json."""
    for note in check_pair(args):
        logger.log_text(note)
    given = read_threshold(args)
    model, _ = load_model(state, args, logger, device)
    full, segments = embed_vectors(model, os.getcwd(), [args['enroll'], args['test']], EmbeddingRecipe.of(args), device)
    score = float(score_trials(full, segments, [0], [1])[0])
    summary = {'enroll': args['enroll'], 'test': args['test'], 'score': score}
    calibration = state.get('qmf')
    if calibration is not None:
        seconds = [audio_length(args[side]) / SAMPLE_RATE for side in SIDES]
        quality = utterance_quality(calibration, full, segments, seconds)
        llr = float(trial_llrs(calibration, np.array([score]), quality, [0], [1])[0])
        p_target = args['p_target']
        summary.update(llr=llr, p_target=p_target, posterior=float(posterior(llr, p_target)))
        logger.log_text(
            f'verify: score {score:.4f}, QMF-calibrated LLR {llr:.4f}, P(same speaker) '
            f'{summary["posterior"]:.4f} at p_target={p_target}'
        )
        decided, name = llr, 'LLR'
        threshold, where = (
            (given, 'threshold given, on the LLR')
            if given is not None
            else (llr_threshold(p_target), f'QMF: the Bayes threshold log((1 - p) / p) at p_target={p_target}')
        )
    else:
        decided, name = score, 'score'
        threshold, where = (given, 'threshold given') if given is not None else checkpoint_threshold(state)
    if threshold is None:
        decision = None
        logger.log_text(f'verify: score {score:.4f}; no decision: {where}; give threshold=X to decide')
    else:
        decision = 'accept' if decided >= threshold else 'reject'
        verdict = 'same speaker' if decision == 'accept' else 'different speakers'
        logger.log_text(f'verify: {name} {decided:.4f}, threshold {threshold:.4f} ({where}): {decision}, {verdict}')
    summary.update(threshold=threshold, threshold_source=where, decision=decision)
    logger.save_results(summary)
    return summary
