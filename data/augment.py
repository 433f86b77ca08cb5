"""Student-input augmentation: MUSAN noise / RIR reverberation, then clipping and a fade envelope."""

import glob
import os

import numpy as np

from data.audio import AudioError, read_audio, read_random_crop

KINDS = ('none', 'rir', 'speech', 'music', 'noise', 'speech_music')
SNR_DB = {'speech': (13.0, 20.0), 'music': (5.0, 25.0), 'noise': (0.0, 15.0)}
NUM_SPEECH_FILES = (3, 8)
_SILENCE = 1e-10  # mean power below which a wave counts as silent


# Easing curves: continuous maps [0, 1] -> [0, 1] with curve(0) = 0 and curve(1) = 1.
def ease_sine(t):
    return 1.0 - np.cos(t * np.pi / 2)


def ease_quad(t):
    return t**2


def ease_cubic(t):
    return t**3


def ease_circ(t):
    return 1.0 - np.sqrt(np.clip(1.0 - t**2, 0.0, 1.0))


def ease_expo(t):
    return (2.0 ** (10 * t) - 1.0) / (2.0**10 - 1.0)  # 2^(10t) shifted and scaled to hit 0 and 1 exactly


def ease_bounce(t):
    """A ball dropped at 1 bouncing three times; each parabola touches 1 where the next begins."""
    edges = np.array([1.0, 2.0, 2.5, 2.75]) / 2.75  # right end of each bounce
    centres = np.array([0.0, 1.5, 2.25, 2.625]) / 2.75
    floors = np.array([0.0, 0.75, 0.9375, 0.984375])
    piece = np.minimum(np.searchsorted(edges, t), 3)
    return np.minimum(7.5625 * (t - centres[piece]) ** 2 + floors[piece], 1.0)


CURVES = (ease_sine, ease_quad, ease_cubic, ease_circ, ease_expo, ease_bounce)


def fade_envelope(length: int, curve, floor: float, fade_in: bool) -> np.ndarray:
    """floor + (1 - floor) * curve(t) over t in [0, 1], reversed for a fade-out, float64 (length,)."""
    envelope = floor + (1.0 - floor) * curve(np.linspace(0.0, 1.0, length))
    return envelope if fade_in else envelope[::-1]


def clip_to_ratio(wave: np.ndarray, ratio: float) -> np.ndarray:
    """Clip to ratio x the wave's own minimum and maximum."""
    return np.clip(wave, ratio * wave.min(), ratio * wave.max())


def noise_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """noise scaled so that 10 log10(P_speech / P_noise) = snr_db; zeros when either input is silent."""
    speech_power = np.mean(np.square(speech, dtype=np.float64))
    noise_power = np.mean(np.square(noise, dtype=np.float64))
    if speech_power < _SILENCE or noise_power < _SILENCE:
        return np.zeros(len(noise))
    return np.asarray(noise, np.float64) * np.sqrt(speech_power / (noise_power * 10.0 ** (snr_db / 10.0)))


def reverberate(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with the unit-energy RIR, aligned on its direct path (peak), cut to the input length."""
    from scipy.signal import fftconvolve  # here: scipy.signal takes 0.6 s to import, a cost for every process

    rir = rir / np.sqrt(np.sum(np.square(rir, dtype=np.float64)))
    direct = int(np.argmax(np.abs(rir)))
    return fftconvolve(wave, rir)[direct : direct + len(wave)]


def choose_kind(rng: np.random.Generator) -> str:
    """One of KINDS, uniformly."""
    return KINDS[rng.integers(len(KINDS))]


def _wav_files(folder, argument):
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'{argument}: folder not found: {folder}')
    files = sorted(glob.glob(os.path.join(folder, '**', '*.wav'), recursive=True))
    if not files:
        raise FileNotFoundError(f'{argument}: no .wav files under {folder}')
    return files


class Augmenter:
    """Draws one augmentation per call; all randomness comes from the rng argument."""

    def __init__(self, musan_root: str, rir_root: str, p: float = 0.6, clip_p: float = 0.3, ease_p: float = 0.3):
        self.musan = {kind: _wav_files(os.path.join(musan_root, kind), 'path_musan') for kind in SNR_DB}
        self.rirs = _wav_files(rir_root, 'path_rir')
        self.p, self.clip_p, self.ease_p = p, clip_p, ease_p

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """With probability 1 - p the crop as it is; else one of KINDS, then (in this branch only)
        clipping with probability clip_p and a fade envelope with probability ease_p."""
        wave = np.asarray(wave, dtype=np.float64)
        if rng.random() >= self.p:
            return wave.astype(np.float32)
        kind = choose_kind(rng)
        if kind == 'rir':
            wave = reverberate(wave, self._read_rir(self.rirs[rng.integers(len(self.rirs))]))
        elif kind == 'speech_music':
            wave = self._add_musan(self._add_musan(wave, 'speech', rng), 'music', rng)
        elif kind != 'none':
            wave = self._add_musan(wave, kind, rng)
        if rng.random() < self.clip_p:
            wave = clip_to_ratio(wave, rng.uniform(0.5, 0.9))
        if rng.random() < self.ease_p:
            curve = CURVES[rng.integers(len(CURVES))]
            wave = wave * fade_envelope(len(wave), curve, rng.uniform(0.1, 0.3), fade_in=rng.random() < 0.5)
        return wave.astype(np.float32)

    def _add_musan(self, wave, kind, rng):
        """wave plus MUSAN `kind` scaled to one SNR drawn against wave itself; for speech the
        mean of 3-8 crops (babble) is what gets scaled, (L,)."""
        files = self.musan[kind]
        count = rng.integers(NUM_SPEECH_FILES[0], NUM_SPEECH_FILES[1] + 1) if kind == 'speech' else 1
        picks = rng.choice(len(files), count, replace=count > len(files))
        noise = np.mean([self._read_musan(files[i], len(wave), rng) for i in picks], axis=0, dtype=np.float64)
        return wave + noise_at_snr(wave, noise, rng.uniform(*SNR_DB[kind]))

    def _read_musan(self, path, num_samples, rng):
        try:
            return read_random_crop(path, num_samples, rng)
        except AudioError as err:
            raise AudioError(f'path_musan: {err}') from None

    def _read_rir(self, path):
        try:
            rir = read_audio(path)
        except AudioError as err:
            raise AudioError(f'path_rir: {err}') from None
        if not np.any(rir):
            raise AudioError(f'path_rir: {path} is silent, it cannot be scaled to unit energy')
        return rir
