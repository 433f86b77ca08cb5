"""Reading 16 kHz mono wav files, whole or as a crop, with one clear error per bad file."""
import os
from contextlib import contextmanager

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
FRAME_SAMPLES = 160      # one 10 ms frame: num_train_frames / num_test_frames count these


class AudioError(ValueError):
    """A file that cannot be used as 16 kHz mono audio; the message names the file."""


@contextmanager
def _open_checked(path):
    """Open `path` with soundfile and check it is 16 kHz mono before anything is decoded."""
    if not os.path.isfile(path):
        raise AudioError(f"audio file not found: {path}")
    try:
        f = sf.SoundFile(path)
    except (sf.SoundFileError, RuntimeError, OSError) as err:
        raise AudioError(f"cannot read audio file {path}: {err}") from None
    with f:
        if f.samplerate != SAMPLE_RATE:
            raise AudioError(f"{path} has sample rate {f.samplerate} Hz, expected {SAMPLE_RATE} Hz")
        if f.channels != 1:
            raise AudioError(f"{path} has {f.channels} channels, expected mono")
        if f.frames == 0:
            raise AudioError(f"{path} holds no samples")
        yield f


def _read_frames(f, path, start, frames):
    try:
        f.seek(start)
        return f.read(frames, dtype="float32")
    except (sf.SoundFileError, RuntimeError, OSError) as err:
        raise AudioError(f"cannot decode audio file {path}: {err}") from None


def read_audio(path: str, start: int = 0, frames: int = -1) -> np.ndarray:
    """Samples [start, start + frames) of a 16 kHz mono file as float32 (N,); frames=-1 reads to the end."""
    with _open_checked(path) as f:
        return _read_frames(f, path, start, frames)


def audio_length(path) -> int:
    """Number of samples, from the header only (nothing is decoded)."""
    with _open_checked(path) as f:
        return f.frames


def wrap_pad(wave: np.ndarray, num_samples: int) -> np.ndarray:
    """Repeat a wave shorter than num_samples from its start until it is num_samples long."""
    if len(wave) == 0:
        raise AudioError("cannot pad an empty wave")
    return np.pad(wave, (0, num_samples - len(wave)), mode="wrap")


def random_start(length: int, num_samples: int, rng: np.random.Generator) -> int:
    """Uniform start of a num_samples crop in a wave of `length` samples; 0 (no draw) when it is too short."""
    if length <= num_samples:
        return 0
    return int(rng.integers(0, length - num_samples + 1))


def read_random_crop(path: str, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A random num_samples crop, float32 (num_samples,), decoding only the crop; short files are wrap-padded."""
    with _open_checked(path) as f:
        start = random_start(f.frames, num_samples, rng)
        wave = _read_frames(f, path, start, num_samples)
    if len(wave) < num_samples:
        wave = wrap_pad(wave, num_samples)
    return wave
