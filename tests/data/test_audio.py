from math import gcd

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from data.audio import (
    SAMPLE_RATE,
    AudioError,
    audio_length,
    random_start,
    read_audio,
    read_random_crop,
    wrap_pad,
)
from data.datasets import crop


def write_wav(path, wave, rate=SAMPLE_RATE):
    sf.write(str(path), wave, rate, subtype='FLOAT')
    return str(path)


@pytest.fixture
def ramp_wav(tmp_path):
    wave = (np.arange(1000, dtype=np.float32) / 1000).astype(np.float32)
    return write_wav(tmp_path / 'ramp.wav', wave), wave


def test_read_audio_returns_exact_samples(ramp_wav):
    path, wave = ramp_wav
    out = read_audio(path)
    assert out.dtype == np.float32 and out.shape == (1000,)
    np.testing.assert_array_equal(out, wave)


def test_read_audio_start_and_frames_read_that_slice(ramp_wav):
    path, wave = ramp_wav
    np.testing.assert_array_equal(read_audio(path, start=250, frames=100), wave[250:350])
    np.testing.assert_array_equal(read_audio(path, start=900), wave[900:])


def test_audio_length_is_sample_count(ramp_wav):
    assert audio_length(ramp_wav[0]) == 1000


def test_missing_file_names_file(tmp_path):
    with pytest.raises(AudioError, match=r'not found: .*nothing\.wav'):
        read_audio(str(tmp_path / 'nothing.wav'))


def test_unreadable_file_names_file(tmp_path):
    path = tmp_path / 'text.wav'
    path.write_text('not audio at all')
    with pytest.raises(AudioError, match=r'cannot read audio file .*text\.wav'):
        read_audio(str(path))
    assert issubclass(AudioError, ValueError)


def test_wrap_pad_repeats_from_start():
    np.testing.assert_array_equal(wrap_pad(np.array([1.0, 2.0, 3.0]), 8), [1, 2, 3, 1, 2, 3, 1, 2])
    with pytest.raises(AudioError):
        wrap_pad(np.zeros(0), 4)


def test_random_start_covers_every_start_uniformly():
    rng = np.random.default_rng(0)
    starts = [random_start(10, 7, rng) for _ in range(4000)]
    assert set(starts) == {0, 1, 2, 3}
    assert np.allclose(np.bincount(starts) / 4000, 0.25, atol=0.03)
    assert random_start(5, 7, rng) == 0 and random_start(7, 7, rng) == 0


def test_read_random_crop_equals_crop_of_whole_file(ramp_wav):
    path, wave = ramp_wav
    for seed in range(5):
        from_disk = read_random_crop(path, 300, np.random.default_rng(seed))
        in_memory = crop(wave, 300, np.random.default_rng(seed))
        np.testing.assert_array_equal(from_disk, in_memory)
    np.testing.assert_array_equal(read_random_crop(path, 2500, np.random.default_rng(0)), np.tile(wave, 3)[:2500])


def test_an_empty_file_is_named(tmp_path):
    path = str(tmp_path / 'empty.wav')
    write_wav(path, np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioError, match=f'{path} holds no samples'):
        read_random_crop(path, 100, np.random.default_rng(0))


def sine(rate, seconds, hz=1000.0):
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def to_16k(wave, rate):
    """The whole-file reference: scipy's resample_poly with up/down reduced by their gcd."""
    g = gcd(SAMPLE_RATE, rate)
    return resample_poly(wave, SAMPLE_RATE // g, rate // g)


def reference_crop(path, num_samples, rng):
    """read_random_crop as it was when only 16 kHz mono was accepted, written with soundfile directly."""
    frames = sf.info(path).frames
    start = int(rng.integers(0, frames - num_samples + 1)) if frames > num_samples else 0
    wave = sf.read(path, frames=num_samples, start=start, dtype='float32')[0]
    return np.pad(wave, (0, num_samples - len(wave)), mode='wrap')


@pytest.mark.parametrize('subtype, lengths', [('PCM_16', (1, 299, 300, 301, 4321)), ('FLOAT', (50, 3000))])
def test_16k_mono_files_read_bitwise_as_before(tmp_path, subtype, lengths):
    for n in lengths:
        wave = np.random.default_rng(n).uniform(-1, 1, n).astype(np.float32)
        path = str(tmp_path / f'{n}.wav')
        sf.write(path, wave, SAMPLE_RATE, subtype=subtype)
        on_disk = sf.read(path, dtype='float32')[0]
        assert audio_length(path) == n
        np.testing.assert_array_equal(read_audio(path), on_disk)
        np.testing.assert_array_equal(read_audio(path, start=n // 3, frames=n // 2), on_disk[n // 3 : n // 3 + n // 2])
        for seed in range(4):
            rng, expected_rng = np.random.default_rng(seed), np.random.default_rng(seed)
            out = read_random_crop(path, 300, rng)
            np.testing.assert_array_equal(out, reference_crop(path, 300, expected_rng))
            assert out.dtype == np.float32 and rng.integers(1 << 30) == expected_rng.integers(1 << 30)  # same draws


@pytest.mark.parametrize('rate', [22050, 8000])
def test_other_rates_read_as_resample_poly_of_the_whole_file(tmp_path, rate):
    wave = sine(rate, 1.5)
    path = write_wav(tmp_path / f'{rate}.wav', wave, rate)
    out = read_audio(path)
    expected = to_16k(wave, rate)
    assert out.dtype == np.float32 and audio_length(path) == len(expected) == 24000
    np.testing.assert_array_equal(out, expected)
    peak_hz = np.argmax(np.abs(np.fft.rfft(out))) * SAMPLE_RATE / len(out)
    assert abs(peak_hz - 1000.0) <= SAMPLE_RATE / len(out)


def test_crops_of_a_44k1_file_are_slices_of_the_whole_file_resampled(tmp_path, frames_read):
    wave = np.random.default_rng(0).uniform(-1, 1, 44100 * 2 + 17).astype(np.float32)
    path = write_wav(tmp_path / '44k1.wav', wave, 44100)
    whole = to_16k(wave, 44100)  # (32007,)
    assert audio_length(path) == len(whole)
    for start in (0, 5, 1000, 17321, len(whole) - 1000, len(whole) - 3):  # near the edges too
        np.testing.assert_allclose(read_audio(path, start, 1000), whole[start : start + 1000], atol=1e-6)
    np.testing.assert_allclose(read_audio(path, 20000), whole[20000:], atol=1e-6)

    requested = frames_read
    for seed in range(5):
        start = random_start(len(whole), 3200, np.random.default_rng(seed))
        np.testing.assert_allclose(
            read_random_crop(path, 3200, np.random.default_rng(seed)), whole[start : start + 3200], atol=1e-6
        )
    # 3200 samples are 8820 frames at 44.1 kHz; the rest is the filter's reach and the 441-frame grid
    assert max(requested) < 8820 + 2 * 441 + 2 * 30


def test_a_short_8k_file_is_resampled_then_wrap_padded(tmp_path):
    wave = sine(8000, 0.05)  # 400 frames, 800 samples at 16 kHz
    path = write_wav(tmp_path / 'short.wav', wave, 8000)
    expected = to_16k(wave, 8000)
    np.testing.assert_array_equal(read_random_crop(path, 2000, np.random.default_rng(0)), np.tile(expected, 3)[:2000])


def test_stereo_is_the_mean_of_its_channels(tmp_path):
    stereo = np.random.default_rng(0).uniform(-1, 1, (3000, 2)).astype(np.float32)
    path = write_wav(tmp_path / 'stereo.wav', stereo)
    mono = stereo.mean(axis=1)
    np.testing.assert_array_equal(read_audio(path), mono)
    np.testing.assert_array_equal(
        read_random_crop(path, 1000, np.random.default_rng(3)), crop(mono, 1000, np.random.default_rng(3))
    )
    path = write_wav(tmp_path / 'stereo22k.wav', stereo, 22050)
    np.testing.assert_array_equal(read_audio(path), to_16k(mono, 22050))
