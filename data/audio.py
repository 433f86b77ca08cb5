"""Reading audio files as 16 kHz mono, whole or as a crop, with one clear error per bad file.

A file at another rate is resampled (scipy's polyphase resample_poly) and one with several channels
is mixed down to their mean; a 16 kHz mono file is read as it is, sample for sample. Positions and
lengths are counted in 16 kHz samples whatever the file's own rate.
"""

import os
from contextlib import contextmanager
from math import gcd

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
FRAME_SAMPLES = 160  # one 10 ms frame: num_train_frames / num_test_frames count these


class AudioError(ValueError):
    """A file that cannot be read as audio (missing, unreadable, undecodable or empty); the message names the file."""


@contextmanager
def _open_checked(path):
    """Open `path` with soundfile and check it holds samples before anything is decoded."""
    if not os.path.isfile(path):
        raise AudioError(f'audio file not found: {path}')
    try:
        f = sf.SoundFile(path)
    except (sf.SoundFileError, RuntimeError, OSError) as err:
        raise AudioError(f'cannot read audio file {path}: {err}') from None
    with f:
        if f.frames == 0:
            raise AudioError(f'{path} holds no samples')
        yield f


def _ratio(rate: int) -> tuple[int, int]:
    """(up, down) that take `rate` to 16 kHz, reduced by their gcd: 22050 Hz -> (320, 441), 16 kHz -> (1, 1)."""
    g = gcd(SAMPLE_RATE, rate)
    return SAMPLE_RATE // g, rate // g


def resampled_length(frames, rate):
    """Length in 16 kHz samples of `frames` at `rate` Hz (ints or int arrays): resample_poly's output
    length, ceil(frames * 16000 / rate)."""
    return -(-frames * SAMPLE_RATE // rate)


def _length(f: sf.SoundFile) -> int:
    """Length of an open file in 16 kHz samples."""
    return resampled_length(f.frames, f.samplerate)


def _read_native(f: sf.SoundFile, path, start: int, frames: int) -> np.ndarray:
    """Frames [start, start + frames) at the file's own rate (frames=-1: to the end), mono float32 (n,)."""
    try:
        f.seek(start)
        wave = f.read(frames, dtype='float32')  # (n,) mono, (n, C) otherwise
    except (sf.SoundFileError, RuntimeError, OSError) as err:
        raise AudioError(f'cannot decode audio file {path}: {err}') from None
    return wave if wave.ndim == 1 else wave.mean(axis=1)


def _read(f: sf.SoundFile, path, start: int, frames: int) -> np.ndarray:
    """16 kHz samples [start, start + frames) of an open file (frames=-1: to the end), float32 (n,).

    Equal to the same slice of the whole file resampled, yet decodes only what that slice depends on:
    from a multiple of `down` (where the input grid and the 16 kHz grid of the whole file meet, so the
    filter phases line up) a filter's reach before `start`, to a filter's reach after the last sample.
    """
    up, down = _ratio(f.samplerate)
    if up == down:
        return _read_native(f, path, start, frames)
    # native frames the filter reaches each side of an output sample (resample_poly's spans 10 * max(up, down)
    # upsampled samples each side), plus one for rounding
    reach = -(-10 * max(up, down) // up) + 1
    first = max(0, (start * down // up - reach) // down * down)  # native frame; 16 kHz sample first * up // down
    count = -1 if frames < 0 else -(-(start + frames) * down // up) + reach - first
    from scipy.signal import resample_poly  # here: scipy.signal takes 0.6 s to import; most files need none

    wave = resample_poly(_read_native(f, path, first, count), up, down)  # (m,) float32
    offset = start - first * up // down
    return wave[offset:] if frames < 0 else wave[offset : offset + frames]


def read_audio(path: str, start: int = 0, frames: int = -1) -> np.ndarray:
    """16 kHz samples [start, start + frames) of a file as float32 (N,); frames=-1 reads to the end."""
    with _open_checked(path) as f:
        return _read(f, path, start, frames)


def audio_info(path) -> tuple[int, int, int]:
    """(length in 16 kHz samples, the file's own sample rate, its channel count), from the header only."""
    with _open_checked(path) as f:
        return _length(f), f.samplerate, f.channels


def audio_length(path) -> int:
    """Number of 16 kHz samples, from the header only (nothing is decoded)."""
    with _open_checked(path) as f:
        return _length(f)


def wrap_pad(wave: np.ndarray, num_samples: int) -> np.ndarray:
    """Repeat a wave shorter than num_samples from its start until it is num_samples long."""
    if len(wave) == 0:
        raise AudioError('cannot pad an empty wave')
    return np.pad(wave, (0, num_samples - len(wave)), mode='wrap')


def random_start(length: int, num_samples: int, rng: np.random.Generator) -> int:
    """Uniform start of a num_samples crop in a wave of `length` samples; 0 (no draw) when it is too short."""
    if length <= num_samples:
        return 0
    return int(rng.integers(0, length - num_samples + 1))


def read_random_crop(path: str, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A random num_samples crop at 16 kHz, float32 (num_samples,), decoding only the crop (and the
    resampling filter's reach); short files are wrap-padded."""
    with _open_checked(path) as f:
        start = random_start(_length(f), num_samples, rng)
        wave = _read(f, path, start, num_samples)
    if len(wave) < num_samples:
        wave = wrap_pad(wave, num_samples)
    return wave
