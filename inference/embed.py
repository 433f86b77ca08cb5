"""mode=embed: embeddings of a user's files with a trained model, as evaluation computes them.

    out/embeddings.npy   float32 (N, 2E): per file, [unit full-utterance embedding | mean of the unit
                         segment embeddings] (evaluation.scoring.utterance_vectors), so that the score
                         of two files is 0.5 x the dot product of their rows
    out/keys.txt         the files, one a line, row i of the matrix = line i, in the order of wav_list
    out/bad_files.txt    the files that could not be embedded, '<file>\t<why>' a line (empty: none)
    out/embed.json       the model and recipe the embeddings come from
    out/qmf.npz, qmf.json  with a checkpoint that carries a QMF calibration: each file's quality
                         measures (log_seconds, imposter_mean, and asnorm_mean / asnorm_std when the
                         calibration AS-normalises), rows as the matrix's; the calibration's weights
                         (docs/inference.md: the LLR of two rows)

Files are embedded PART_UTTERANCES at a time, each part saved (out/parts/) before the next starts:
a rerun with the same out embeds only what is not there yet, and refuses an out folder that holds
another model's embeddings. A file that cannot be read is listed, never fatal.
"""

import hashlib
import json
import os
import shutil

import numpy as np
import torch

from data.audio import SAMPLE_RATE, AudioError, audio_info, audio_length
from data.voxceleb import conversion_notes
from evaluation.evaluate import EmbeddingRecipe, embed_as_set
from evaluation.qmf import describe, utterance_quality
from inference.model import MIN_SAMPLES, load_model
from utils.checkpoint import write_atomic
from utils.progress import progress_bar

AUDIO_EXTENSIONS = ('.wav', '.flac')  # what a wav_list folder is searched for (a list names any file)
PART_UTTERANCES = 500  # files embedded between two saves: the most an interruption loses
FILES = {'matrix': 'embeddings.npy', 'keys': 'keys.txt', 'bad': 'bad_files.txt', 'identity': 'embed.json'}
QMF_FILES = {'quality': 'qmf.npz', 'calibration': 'qmf.json'}


def list_inputs(wav_list):
    """(root, keys): a folder gives every .wav / .flac under it (keys relative to it, sorted); a text
    file one path a line (relative to the current folder; blank lines and repeats skipped)."""
    root, found = scan_inputs(wav_list)
    keys = sorted(found) if os.path.isdir(wav_list) else list(dict.fromkeys(found))
    if not keys:
        raise no_input(wav_list)
    return root, keys


def check_inputs(wav_list):
    """A user error unless wav_list names at least one audio file. It stops at the first one found,
    so that checking before the run does not scan a large folder twice."""
    if next(scan_inputs(wav_list)[1], None) is None:
        raise no_input(wav_list)


def scan_inputs(wav_list):
    """(root, the keys as they are found: unsorted, repeats kept, read lazily)."""
    if os.path.isdir(wav_list):
        return wav_list, folder_keys(wav_list)
    if os.path.isfile(wav_list):
        return os.getcwd(), listed_keys(wav_list)
    raise FileNotFoundError(
        f'wav_list={wav_list!r}: no such file or folder (give a list of audio files, one a '
        f'line, or a folder of .wav / .flac files)'
    )


def folder_keys(folder):
    for parent, _, names in os.walk(folder):
        for name in names:
            if name.lower().endswith(AUDIO_EXTENSIONS):
                yield os.path.relpath(os.path.join(parent, name), folder)


def listed_keys(path):
    with open(path, encoding='utf-8') as file:
        for line in file:
            if line.strip():
                yield line.strip()


def no_input(wav_list):
    return ValueError(f'wav_list={wav_list!r} names no audio file')


def check_files(root, keys, argument):
    """(the keys whose files can be embedded, {key: why not} for the others, the log's notes on
    files that are read converted), from the headers only."""
    readable, bad, rates, channels = [], {}, [], []
    for key in keys:
        try:
            length, rate, count = audio_info(os.path.join(root, key))
        except AudioError as error:
            bad[key] = str(error)
            continue
        if length < MIN_SAMPLES:
            bad[key] = f'{key} is shorter than {MIN_SAMPLES} samples at 16 kHz, too short to embed'
            continue
        readable.append(key)
        rates.append(rate)
        channels.append(count)
    return readable, bad, [note for note in conversion_notes(rates, channels, argument) if note]


def embed_vectors(model, root, keys, recipe, device):
    """Evaluation's recipe (an EmbeddingRecipe: whole utterance + segments, batched):
    (unit full embeddings (N, E), mean unit segment embeddings (N, E))."""
    return embed_as_set(model, root, keys, recipe, device, show_progress=False)


def embed_part(model, root, keys, recipe, device, width):
    """(rows (n, 2E) float32 of the keys that could be embedded, in order; {key: why} of the others).
    A file whose header reads but whose samples do not decode stops the batch it is in: the part is
    then embedded one file at a time to name it."""
    try:
        return np.concatenate([v.numpy() for v in embed_vectors(model, root, keys, recipe, device)], axis=1), {}
    except AudioError:
        pass
    rows, bad = [], {}
    for key in keys:
        try:
            rows.append(np.concatenate([v.numpy() for v in embed_vectors(model, root, [key], recipe, device)], axis=1))
        except AudioError as error:
            bad[key] = str(error).removeprefix('path_test: ')  # evaluation's reader names its own argument
    return (np.concatenate(rows) if rows else np.empty((0, width), np.float32)), bad


def weights_fingerprint(weights):
    """sha1 of a state_dict's tensors (names and bytes, in name order): which model made the embeddings."""
    digest = hashlib.sha1()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(weights[name].detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def open_out(out, identity):
    """Creates out (and out/parts) with embed.json, or checks that an existing one was filled by the
    same model and recipe."""
    path = os.path.join(out, FILES['identity'])
    if os.path.isfile(path):
        with open(path, encoding='utf-8') as file:
            saved = json.load(file)
        recipe = ('weights', 'num_test_frames', 'num_seg', 'eval_segments_like_original')
        # False: an embed.json written before the switch existed, whose segments all took the adapters
        changed = [key for key in recipe if saved.get(key, False) != identity[key]]
        if changed:
            raise ValueError(
                f'out={out!r} holds embeddings of another model or recipe ({", ".join(changed)} '
                f'differ); give a new out folder'
            )
    os.makedirs(os.path.join(out, 'parts'), exist_ok=True)
    write_atomic(path, lambda file: json.dump(identity, file, indent=2), mode='w')


def load_done(out):
    """{key: row (2E,)} of everything embedded before into out: the finished matrix of an earlier
    run and the parts saved since."""
    done = {}
    matrix, keys = os.path.join(out, FILES['matrix']), os.path.join(out, FILES['keys'])
    if os.path.isfile(matrix) and os.path.isfile(keys):
        rows = np.load(matrix)
        with open(keys, encoding='utf-8') as file:
            names = file.read().splitlines()
        if len(names) == len(rows):  # else a kill between writing the two: the parts still hold them
            done.update(zip(names, rows))
    for name in sorted(os.listdir(os.path.join(out, 'parts'))):
        if name.endswith('.npz'):
            with np.load(os.path.join(out, 'parts', name)) as part:
                done.update(zip(part['keys'].tolist(), part['rows']))
    return done


def save_part(out, keys, rows):
    """One part, written atomically: a kill leaves it whole or absent."""
    parts = os.path.join(out, 'parts')
    path = os.path.join(parts, f'part-{len(os.listdir(parts)):06d}.npz')
    write_atomic(path, lambda file: np.savez(file, keys=np.array(keys, dtype=str), rows=rows))


def write_outputs(out, keys, done, bad):
    """The matrix and key list in the order of keys, the bad files; then the parts, now in the
    matrix, are removed."""
    embedded = [key for key in keys if key in done]
    dim = len(next(iter(done.values()))) if done else 0
    matrix = np.stack([done[key] for key in embedded]) if embedded else np.empty((0, dim), np.float32)
    write_atomic(os.path.join(out, FILES['matrix']), lambda file: np.save(file, matrix.astype(np.float32)))
    write_atomic(os.path.join(out, FILES['keys']), lambda file: file.write(''.join(f'{k}\n' for k in embedded)), 'w')
    write_atomic(
        os.path.join(out, FILES['bad']),
        lambda file: file.write(''.join(f'{key}\t{why}\n' for key, why in bad.items())),
        'w',
    )
    shutil.rmtree(os.path.join(out, 'parts'))
    return embedded


def write_quality(out, root, keys, calibration):
    """QMF's quality measures of every embedded file (rows of the matrix) and the calibration's
    weights, so that two rows' score can be calibrated without this code."""
    matrix = torch.from_numpy(np.load(os.path.join(out, FILES['matrix'])))  # (N, 2E)
    full, seg_mean = matrix.chunk(2, dim=1)  # (N, E) each
    seconds = [audio_length(os.path.join(root, key)) / SAMPLE_RATE for key in keys]
    quality = utterance_quality(calibration, full, seg_mean, seconds)
    arrays = {'log_seconds': quality['log_seconds'], 'imposter_mean': quality['imposter_mean']}
    if quality['asnorm'] is not None:
        arrays.update(asnorm_mean=quality['asnorm'][0], asnorm_std=quality['asnorm'][1])
    write_atomic(os.path.join(out, QMF_FILES['quality']), lambda file: np.savez(file, **arrays))
    described = describe(calibration)
    write_atomic(os.path.join(out, QMF_FILES['calibration']), lambda file: json.dump(described, file, indent=2), 'w')


def embed_checkpoint(args, logger, device, state):
    """Embeds every file of wav_list into out (None: the run folder's embeddings/), resuming what an
    earlier run into the same out left."""
    root, keys = list_inputs(args['wav_list'])
    out = args['out'] or os.path.join(logger.run_dir, 'embeddings')
    identity = {
        'checkpoint': os.path.abspath(args['checkpoint']),
        'epoch': state['epoch'],
        'weights': weights_fingerprint(state['model']),
        'num_test_frames': args['num_test_frames'],
        'num_seg': args['num_seg'],
        'eval_segments_like_original': args['eval_segments_like_original'],
        'embedding_size': args['embedding_size'],
        'columns': 'unit full-utterance embedding, then the mean of the unit segment embeddings; '
        'score = 0.5 x dot product of two rows',
    }
    open_out(out, identity)
    model, _ = load_model(state, args, logger, device)
    done = load_done(out)
    todo = [key for key in keys if key not in done]
    logger.log_text(
        f'embed: {len(keys)} files in wav_list={args["wav_list"]}, {len(keys) - len(todo)} of them '
        f'embedded before in {out}, {len(todo)} to embed'
    )
    readable, bad, notes = check_files(root, todo, 'wav_list')
    for note in notes:
        logger.log_text(note)
    parts = [readable[start : start + PART_UTTERANCES] for start in range(0, len(readable), PART_UTTERANCES)]
    for part in progress_bar(parts, 'embed'):
        rows, failed = embed_part(model, root, part, EmbeddingRecipe.of(args), device, 2 * args['embedding_size'])
        kept = [key for key in part if key not in failed]
        save_part(out, kept, rows)
        done.update(zip(kept, rows))
        bad.update(failed)
    embedded = write_outputs(out, keys, done, bad)
    if bad:
        shown = ', '.join(f'{key} ({why})' for key, why in list(bad.items())[:3])
        logger.log_text(
            f'wav_list: {len(bad)} files could not be embedded, listed in {FILES["bad"]}: {shown}'
            + (', ...' if len(bad) > 3 else '')
        )
    if not embedded:
        raise ValueError(
            f'wav_list={args["wav_list"]!r}: none of its {len(keys)} files could be embedded; '
            f'{os.path.join(out, FILES["bad"])} says why for each'
        )
    logger.log_text(
        f'embed: {len(embedded)} embeddings ({len(embedded)} x {2 * args["embedding_size"]}) in '
        f'{os.path.join(out, FILES["matrix"])}, keys in {FILES["keys"]}'
    )
    if state.get('qmf') is not None:
        write_quality(out, root, embedded, state['qmf'])
        logger.log_text(
            f'embed: QMF quality measures in {QMF_FILES["quality"]}, the calibration in {QMF_FILES["calibration"]}'
        )
    summary = {
        'out': os.path.abspath(out),
        'embedded': len(embedded),
        'bad': len(bad),
        'embedded_now': len(readable) - len(set(bad) & set(readable)),
    }
    logger.save_results(summary)
    return summary
