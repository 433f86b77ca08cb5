"""Checkpoint files and the random state they carry: the one module that writes and reads them.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so
`torch.load(path, weights_only=True)` reads it without running any code from the file.
"""

import os
import random
import time

import numpy as np
import torch

from utils.distributed import gather_objects


def write_atomic(path, write, mode='wb'):
    """write(file) into a temporary file, flushed to disk, then renamed over path: a kill at any
    moment leaves the old file or the new one, never a torn one."""
    temporary = f'{path}.tmp-{os.getpid()}'
    try:
        with open(temporary, mode) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def save_checkpoint(path, state, model, optimizer, scaler, rng, **meta):
    """Writes a run's checkpoint to path (atomically): the run's progress (state.to_checkpoint(): its
    epoch, step, best epoch, ...), the model's, optimizer's and loss scaler's state dicts, the random
    states of every rank (rng, gather_rng_states'), the time it was saved, and meta (the settings,
    the model's config: what rebuilds it without the command line)."""
    write_checkpoint(
        path,
        {
            **state.to_checkpoint(),
            'model': model.state_dict(),
            'optimizer': optimizer.state_dict(),
            'scaler': scaler.state_dict(),
            'rng': rng,
            'saved_at': time.time(),  # metrics.jsonl's records up to this time are the run's so far
            **meta,
        },
    )


def write_checkpoint(path, checkpoint):
    """A checkpoint dict (one save_checkpoint made, or one read back and edited) written atomically."""
    write_atomic(path, lambda file: torch.save(checkpoint, file))


# what every checkpoint of a run holds (trainer.state's save); a file without them is someone else's
RUN_ENTRIES = ('model', 'args', 'epoch', 'num_classes')


def load_checkpoint(path, argument='checkpoint'):
    """The dict saved by save_checkpoint; a missing or unreadable file, or one that is not a run's
    checkpoint (a bare state_dict, another project's), names the argument to fix."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{argument}={path!r}: no such checkpoint file')
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception:  # torch raises many types for a file that is not a checkpoint
        # not torch's message: a cryptic 'KeyError: 101' for a text file, or advice to load an untrusted
        # file with weights_only=False
        raise ValueError(
            f'{argument}={path!r} cannot be read as a checkpoint (torch.load fails on it): '
            f'give the last.pt / best.pt of a run'
        ) from None
    missing = [entry for entry in RUN_ENTRIES if entry not in state] if isinstance(state, dict) else list(RUN_ENTRIES)
    if missing:
        raise ValueError(
            f'{argument}={path!r} is not a checkpoint of this project (no {", ".join(missing)} '
            f'entry): give the last.pt / best.pt of a run'
        )
    return state


def rng_state():
    """This process's random state: python, NumPy (Hugging Face's masking draws from it), torch and CUDA."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        'python': random.getstate(),
        'torch': torch.get_rng_state(),
        'numpy': {
            'kind': kind,
            'keys': torch.from_numpy(keys.astype(np.int64)),
            'position': position,
            'has_gauss': has_gauss,
            'cached': cached,
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state):
    random.setstate(state['python'])
    numpy = state['numpy']
    np.random.set_state(
        (numpy['kind'], numpy['keys'].numpy().astype(np.uint32), numpy['position'], numpy['has_gauss'], numpy['cached'])
    )
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'])


def gather_rng_states():
    """[the random state of rank 0, of rank 1, ...] on rank 0; None on the other ranks (a collective)."""
    return gather_objects(rng_state())
