import numpy as np
import pytest
import soundfile as sf

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
    sf.write(str(path), wave, rate, subtype="FLOAT")
    return str(path)


@pytest.fixture
def ramp_wav(tmp_path):
    wave = (np.arange(1000, dtype=np.float32) / 1000).astype(np.float32)
    return write_wav(tmp_path / "ramp.wav", wave), wave


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


def test_wrong_sample_rate_names_file_and_rate(tmp_path):
    path = write_wav(tmp_path / "8k.wav", np.zeros(800, np.float32), rate=8000)
    with pytest.raises(AudioError, match=r"8k\.wav has sample rate 8000 Hz, expected 16000"):
        read_audio(path)
    with pytest.raises(AudioError, match="8000"):
        audio_length(path)


def test_stereo_names_file_and_channels(tmp_path):
    path = write_wav(tmp_path / "stereo.wav", np.zeros((800, 2), np.float32))
    with pytest.raises(AudioError, match=r"stereo\.wav has 2 channels, expected mono"):
        read_audio(path)


def test_missing_file_names_file(tmp_path):
    with pytest.raises(AudioError, match=r"not found: .*nothing\.wav"):
        read_audio(str(tmp_path / "nothing.wav"))


def test_unreadable_file_names_file(tmp_path):
    path = tmp_path / "text.wav"
    path.write_text("not audio at all")
    with pytest.raises(AudioError, match=r"cannot read audio file .*text\.wav"):
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
    path = str(tmp_path / "empty.wav")
    write_wav(path, np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioError, match=f"{path} holds no samples"):
        read_random_crop(path, 100, np.random.default_rng(0))
