"""Source-filter voices for the demo corpus: speakers, utterances and recording channels.

A voice is a glottal pulse train (speaker f0, open quotient, jitter, shimmer, breathiness)
shaped in the short-time spectrum by formant resonances (vowel targets scaled by the
speaker's vocal-tract length), a spectral tilt, and frication noise for consonants.
Everything is numpy; randomness comes only from the generator passed in.
"""

from collections import namedtuple

import numpy as np
import scipy.fft
from scipy.ndimage import uniform_filter1d

from data.audio import SAMPLE_RATE

N_FFT = 512
HOP = 128  # 8 ms frames
FREQS = np.fft.rfftfreq(N_FFT, 1 / SAMPLE_RATE)  # (257,)
WINDOW = np.hanning(N_FFT + 1)[:-1].astype(np.float32)

# Adult male reference formants F1-F3 (Hz), Peterson & Barney style averages.
VOWELS = {
    'i': (270, 2290, 3010),
    'I': (390, 1990, 2550),
    'E': (530, 1840, 2480),
    'ae': (660, 1720, 2410),
    'a': (730, 1090, 2440),
    'O': (570, 840, 2410),
    'U': (440, 1020, 2240),
    'u': (300, 870, 2240),
    'V': (640, 1190, 2390),
    'R': (490, 1350, 1690),
}
# Voiced consonants: formants and voicing amplitude relative to a vowel.
SONORANTS = {
    'm': ((250, 1100, 2200), 0.3),
    'n': ((250, 1600, 2500), 0.3),
    'l': ((350, 1100, 2700), 0.6),
    'r': ((400, 1200, 1600), 0.6),
    'w': ((300, 700, 2300), 0.6),
    'j': ((280, 2200, 3000), 0.6),
}
# Fricatives: noise centre (Hz, male reference), width (octaves), level, voicing.
FRICATIVES = {
    's': (6000, 0.5, 0.5, 0.0),
    'S': (3000, 0.7, 0.5, 0.0),
    'f': (4000, 2.0, 0.15, 0.0),
    'h': (1500, 2.0, 0.15, 0.0),
    'z': (6000, 0.5, 0.3, 0.3),
    'v': (4000, 2.0, 0.1, 0.3),
}
# Plosives: burst centre (Hz), width (octaves), voiced closure.
PLOSIVES = {
    'p': (1000, 2.0, False),
    't': (4500, 1.0, False),
    'k': (2500, 0.8, False),
    'b': (1000, 2.0, True),
    'd': (4500, 1.0, True),
    'g': (2500, 0.8, True),
}
# A stretch of an utterance with constant targets: formants F1-F3 (Hz, None when unvoiced and
# not nasal), voicing amplitude, frication level, frication noise centre (Hz) and width (octaves).
Segment = namedtuple('Segment', 'formants voicing frication centre width frames')
BASE_BANDWIDTHS = np.array([60.0, 90.0, 120.0, 180.0, 250.0])
HIGH_FORMANTS = (3400.0, 4400.0)  # F4, F5 of the reference tract


def log_uniform(rng, low, high):
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def sample_speaker(rng, group):
    """Identity of one voice. group 'm' / 'f' sets the f0 and vocal-tract ranges, which
    overlap between speakers of a group."""
    female = group == 'f'
    return {
        'group': group,
        'f0_hz': log_uniform(rng, 160, 260) if female else log_uniform(rng, 85, 155),
        'f0_range_st': rng.uniform(1.5, 4.0),
        'formant_scale': rng.uniform(1.08, 1.24) if female else rng.uniform(0.92, 1.06),
        'formant_offsets': rng.normal(0.0, [0.06, 0.06, 0.06, 0.08, 0.08]).tolist(),
        'bandwidth_scale': rng.uniform(0.7, 1.5),
        'tilt_db_oct': rng.uniform(-5.0, 2.0),
        'open_quotient': rng.uniform(0.4, 0.75),
        'jitter': rng.uniform(0.003, 0.02),
        'shimmer': rng.uniform(0.02, 0.08),
        'breathiness': rng.uniform(0.02, 0.3),
        'speaking_rate': rng.uniform(0.8, 1.25),
    }


def sample_session(rng):
    """One recording (video): the voice shifts a little, the channel is its own."""
    return {
        'f0_shift_st': rng.normal(0.0, 0.3),
        'tilt_shift_db_oct': rng.normal(0.0, 0.35),
        'rate_shift': rng.uniform(0.93, 1.07),
        'channel': channel_response(rng),
        'noise_slope_db_oct': rng.uniform(-4.0, 0.0),
        'hum_hz': rng.choice([0.0, 50.0, 60.0], p=[0.6, 0.2, 0.2]),
        'snr_db': rng.uniform(12.0, 30.0),
        'level_db': rng.uniform(-32.0, -20.0),
    }


def phone_sequence(rng, seconds, rate):
    """Random syllables in phrases separated by pauses, until `seconds` are filled.
    Returns the segments and the phrases as (first frame, end frame, accented frames)."""
    frames = lambda ms: max(1, round(ms / rate * SAMPLE_RATE / 1000 / HOP))
    segments = [silence(frames(rng.uniform(50, 200)))]
    phrases, total = [], segments[0].frames
    while total < seconds * SAMPLE_RATE / HOP + 1:
        start, accents = total, []
        for _ in range(rng.integers(3, 9)):
            for segment in syllable(rng, frames):
                segments.append(segment)
                total += segment.frames
            if rng.random() < 0.35:
                accents.append(total - 3)
        phrases.append((start, total, accents))
        segments.append(silence(frames(rng.uniform(150, 400))))
        total += segments[-1].frames
    return segments, phrases


def silence(frames):
    return Segment(None, 0.0, 0.0, 1000.0, 1.0, frames)


def syllable(rng, frames):
    """(C)(C)V(C) as segments; `frames` turns milliseconds into frames at the speaking rate."""
    parts = [consonant(rng, frames) for _ in range(rng.choice([0, 1, 2], p=[0.2, 0.6, 0.2]))]
    vowel = list(VOWELS)[rng.integers(len(VOWELS))]
    parts.append([Segment(VOWELS[vowel], 1.0, 0.0, 1000.0, 1.0, frames(rng.uniform(70, 180)))])
    if rng.random() < 0.4:
        parts.append(consonant(rng, frames))
    return [segment for part in parts for segment in part]


def consonant(rng, frames):
    """A sonorant, a fricative, or a plosive (closure then burst) as segments."""
    kind = rng.choice(['sonorant', 'fricative', 'plosive'], p=[0.4, 0.3, 0.3])
    if kind == 'sonorant':
        formants, voicing = SONORANTS[list(SONORANTS)[rng.integers(len(SONORANTS))]]
        return [Segment(formants, voicing, 0.0, 1000.0, 1.0, frames(rng.uniform(50, 90)))]
    if kind == 'fricative':
        centre, width, level, voicing = FRICATIVES[list(FRICATIVES)[rng.integers(len(FRICATIVES))]]
        formants = (300, 1200, 2300) if voicing else None
        return [Segment(formants, voicing, level, centre, width, frames(rng.uniform(80, 140)))]
    centre, width, voiced = PLOSIVES[list(PLOSIVES)[rng.integers(len(PLOSIVES))]]
    closure = Segment(
        (250, 1000, 2300) if voiced else None, 0.1 if voiced else 0.0, 0.0, 1000.0, 1.0, frames(rng.uniform(40, 70))
    )  # a voice bar for voiced plosives
    burst = Segment(None, 0.0, 0.4 if voiced else 0.6, centre, width, frames(rng.uniform(10, 25)))
    return [closure, burst]


def control_tracks(segments, voice, num_frames):
    """Per-frame formants (T, 5), bandwidths (T, 5), voicing, frication, noise centre and width
    (T,), cut or extended to num_frames. Formants glide through consonants and are smoothed
    over ~40 ms, like articulators."""
    counts = [segment.frames for segment in segments]
    repeat = lambda values: fit_frames(np.repeat(np.array(values, dtype=float), counts, axis=0), num_frames)
    targets = [[*s.formants, *HIGH_FORMANTS] if s.formants else [np.nan] * 5 for s in segments]
    scale = voice['formant_scale'] * (1.0 + np.array(voice['formant_offsets']))
    formants = smooth(fill_gaps(repeat(targets)) * scale, 5)
    bandwidths = np.broadcast_to(BASE_BANDWIDTHS * voice['bandwidth_scale'], formants.shape)
    voicing, frication, centre, width = (
        repeat([getattr(segment, field) for segment in segments])
        for field in ('voicing', 'frication', 'centre', 'width')
    )
    return (
        formants,
        bandwidths,
        smooth(voicing, 3).astype(np.float32),
        smooth(frication, 2).astype(np.float32),
        centre * voice['formant_scale'],
        width,
    )


def fit_frames(track, num_frames):
    """Cuts a per-frame track, or extends it with its last frame, to num_frames frames."""
    extra = max(0, num_frames - len(track))
    return np.pad(track, [(0, extra)] + [(0, 0)] * (track.ndim - 1), mode='edge')[:num_frames]


def fill_gaps(rows):
    """Carries the last known formants forward (and the first one backward) over unvoiced frames."""
    known = ~np.isnan(rows[:, 0])
    if not known.any():
        return np.tile(np.array([*VOWELS['V'], *HIGH_FORMANTS]), (len(rows), 1))
    index = np.maximum.accumulate(np.where(known, np.arange(len(rows)), 0))
    index[: np.argmax(known)] = np.argmax(known)
    return rows[index]


def smooth(track, width):
    """Moving average over `width` frames along axis 0."""
    return uniform_filter1d(track, width, axis=0, mode='nearest')


def pitch_contour(num_frames, phrases, voice, session, rng):
    """f0 in Hz per frame: per-phrase declination, accents on some syllables, slow wobble."""
    semitones = np.zeros(num_frames)
    for start, end, accents in phrases:
        n = end - start
        semitones[start:end] += np.linspace(0.8, -0.8, n) * rng.uniform(0.5, 1.2)
        if rng.random() < 0.2:
            semitones[end - min(n, 25) : end] += np.linspace(0.0, 1.5, min(n, 25))
        for frame in accents:
            bump = np.exp(-0.5 * ((np.arange(num_frames) - frame) / 8.0) ** 2)  # ~65 ms wide
            semitones += rng.uniform(0.5, 1.5) * bump
    wobble = smooth(rng.normal(0.0, 0.6, num_frames), 15)
    semitones = voice['f0_range_st'] * (semitones + wobble) + session['f0_shift_st']
    return voice['f0_hz'] * 2.0 ** (semitones / 12.0)


def glottal_cycle(open_quotient, points=1024):
    """One period of Rosenberg glottal flow: opening over 60 % of the open phase, closing over
    40 %, then closed. (points,)"""
    within = np.arange(points) / points
    opening, closing = 0.6 * open_quotient, 0.4 * open_quotient
    return np.where(
        within < opening,
        0.5 * (1 - np.cos(np.pi * within / opening)),
        np.where(within < opening + closing, np.cos(0.5 * np.pi * (within - opening) / closing), 0.0),
    )


def glottal_source(f0_per_sample, voice, rng):
    """Glottal-flow derivative with per-period jitter and shimmer, plus aspiration noise pulsed
    with the glottal opening (breathiness). Unit RMS."""
    phase = np.cumsum(f0_per_sample / SAMPLE_RATE)
    jitter = 1.0 + voice['jitter'] * rng.standard_normal(int(phase[-1]) + 1)
    phase = np.cumsum(f0_per_sample * jitter[phase.astype(int)] / SAMPLE_RATE)
    period = phase.astype(int)
    cycle = glottal_cycle(voice['open_quotient'])
    flow = cycle[((phase - period) * len(cycle)).astype(int)]
    flow *= 1.0 + voice['shimmer'] * rng.standard_normal(period[-1] + 1)[period]
    pulses = np.diff(flow, prepend=0.0)
    pulses /= np.sqrt(np.mean(pulses**2)) + 1e-12
    aspiration = rng.standard_normal(len(flow)) * (0.2 + flow)
    aspiration *= voice['breathiness'] / (np.sqrt(np.mean(aspiration**2)) + 1e-12)
    return pulses + aspiration


def formant_envelope(formants, bandwidths):
    """Magnitude of a cascade of two-pole resonators, 1 at 0 Hz. (T, K) -> (T, F)."""
    f = FREQS.astype(np.float32)[None, None, :]
    centre = formants.astype(np.float32)[:, :, None]
    half_squared = (bandwidths.astype(np.float32)[:, :, None] / 2) ** 2
    gains = (centre**2 + half_squared) / np.sqrt(
        ((f - centre) ** 2 + half_squared) * ((f + centre) ** 2 + half_squared)
    )  # (T, K, F)
    return np.prod(gains, axis=1)


def tilt_envelope(tilt_db_oct):
    """A spectral slope above 300 Hz, in dB per octave. (F,)"""
    return (10.0 ** (tilt_db_oct * np.log2(np.maximum(FREQS, 300.0) / 300.0) / 20.0)).astype(np.float32)


def frication_envelope(centre, width):
    """Noise band of a consonant: a Gaussian in log frequency. (T,), (T,) -> (T, F)"""
    octaves = np.log2(np.maximum(FREQS[None, :], 50.0) / centre[:, None]).astype(np.float32)
    return np.exp(-0.5 * (octaves / width[:, None].astype(np.float32)) ** 2)


def stft(signal):
    """Hann-windowed frames, hop N_FFT / 4, single precision.
    (..., L) -> (..., T, F) with T = ceil((L + N_FFT - HOP + 1) / HOP)."""
    padded = np.pad(signal, [(0, 0)] * (signal.ndim - 1) + [(N_FFT - HOP, N_FFT)])
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT, axis=-1)[..., ::HOP, :]
    return scipy.fft.rfft((frames * WINDOW).astype(np.float32), axis=-1)


def istft(spectrum, length):
    """Weighted overlap-add inverse of stft. (T, F) -> (length,)"""
    frames = scipy.fft.irfft(spectrum, n=N_FFT, axis=-1) * WINDOW  # (T, N_FFT)
    quarters = frames.reshape(len(frames), 4, HOP)
    out = np.zeros((len(frames) + 3, HOP))
    for k in range(4):
        out[k : k + len(frames)] += quarters[:, k]
    norm = np.sum(WINDOW.reshape(4, HOP) ** 2, axis=0)  # constant overlap of w**2
    return (out / norm).reshape(-1)[N_FFT - HOP : N_FFT - HOP + length]


def speak(voice, session, seconds, rng):
    """One utterance of `seconds` seconds from a voice in a session, through its channel."""
    length = int(seconds * SAMPLE_RATE)
    segments, phrases = phone_sequence(rng, seconds, voice['speaking_rate'] * session['rate_shift'])
    f0 = pitch_contour(sum(segment.frames for segment in segments), phrases, voice, session, rng)
    f0_per_sample = np.interp(np.arange(length), np.arange(len(f0)) * HOP, f0)
    source, noise = stft(
        np.stack([glottal_source(f0_per_sample, voice, rng), rng.standard_normal(length)])
    )  # (2, T, F)
    formants, bandwidths, voicing, frication, centre, width = control_tracks(segments, voice, len(source))
    # F4 and F5 do not move within an utterance: their envelope is computed once
    tract = (
        formant_envelope(formants[:, :3], bandwidths[:, :3])
        * formant_envelope(formants[:1, 3:], bandwidths[:1, 3:])
        * tilt_envelope(voice['tilt_db_oct'] + session['tilt_shift_db_oct'])
    )  # (T, F)
    voiced = source * tract * voicing[:, None]
    fricated = noise * frication_envelope(centre, width) * 3.0 * frication[:, None]
    return istft((voiced + fricated) * session['channel'], length)


def channel_response(rng):
    """A recording channel's frequency response (F,): random peaks and dips, a slope, band
    limits, and sometimes one close reflection (a comb). Much shorter than a frame, so it is
    applied to every frame's spectrum."""
    octaves = np.log2(np.maximum(FREQS, 20.0))
    gain_db = rng.uniform(-1.0, 1.0) * (octaves - np.log2(1000.0))
    for _ in range(3):
        centre, width = np.log2(log_uniform(rng, 150, 6000)), rng.uniform(0.3, 1.2)
        gain_db += rng.uniform(-4.0, 4.0) * np.exp(-0.5 * ((octaves - centre) / width) ** 2)
    low, high = log_uniform(rng, 50, 150), rng.uniform(5000, 7800)
    gain_db -= 40.0 / (1.0 + np.exp(-(FREQS - high) / 200.0))  # low-pass
    gain_db -= 40.0 / (1.0 + np.exp((FREQS - low) / 30.0))  # high-pass
    response = 10.0 ** (gain_db / 20.0) + 0j
    if rng.random() < 0.5:
        delay = rng.integers(16, 64)  # 1-4 ms
        response *= 1.0 + rng.uniform(0.2, 0.5) * np.exp(-2j * np.pi * FREQS * delay / SAMPLE_RATE)
    return response.astype(np.complex64)


def background_noise(length, slope_db_oct, hum_hz, rng):
    """Stationary coloured noise, plus mains hum harmonics when hum_hz > 0. Unit RMS."""
    size = scipy.fft.next_fast_len(length)  # arbitrary lengths can make the FFT 10x slower
    spectrum = scipy.fft.rfft(rng.standard_normal(size, dtype=np.float32))
    freqs = np.fft.rfftfreq(size, 1 / SAMPLE_RATE)
    spectrum *= 10.0 ** (slope_db_oct * np.log2(np.maximum(freqs, 50.0) / 1000.0) / 20.0).astype(np.float32)
    noise = scipy.fft.irfft(spectrum, n=size)[:length]
    noise /= np.sqrt(np.mean(noise**2))
    if hum_hz:
        noise += np.resize(mains_hum(hum_hz, rng), length)
    return noise / np.sqrt(np.mean(noise**2))


def mains_hum(hum_hz, rng):
    """One second (a whole number of 50 or 60 Hz periods) of hum with 5 harmonics. Unit RMS."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    hum = sum(np.sin(2 * np.pi * k * hum_hz * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 6))
    return hum / np.sqrt(np.mean(hum**2))


def record(speech, session, rng):
    """Adds the session's background noise at its SNR (give or take 2 dB per utterance) and
    sets the level. Peak-limited to [-1, 1]."""
    power = np.mean(speech**2) + 1e-12
    snr_db = session['snr_db'] + rng.uniform(-2.0, 2.0)
    noise = background_noise(len(speech), session['noise_slope_db_oct'], session['hum_hz'], rng)
    mixed = speech + noise * np.sqrt(power / 10.0 ** (snr_db / 10.0))
    level_db = session['level_db'] + rng.uniform(-1.0, 1.0)
    mixed *= 10.0 ** (level_db / 20.0) / np.sqrt(np.mean(mixed**2))
    return np.clip(mixed, -1.0, 32767 / 32768)
