import numpy as np
import pytest
import soundfile as sf

import data.augment as augment
from data.augment import (
    CURVES,
    KINDS,
    Augmenter,
    choose_kind,
    clip_to_ratio,
    ease_bounce,
    fade_envelope,
    noise_at_snr,
    reverberate,
)

SR = 16000
LENGTH = 4000


def write_wav(path, wave, rate=SR):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(wave, np.float32), rate, subtype='FLOAT')


def power_db(x):
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)))


@pytest.fixture
def corpus(tmp_path):
    """MUSAN-like and RIRS_NOISES-like trees with sub-folders; one noise file shorter than a crop."""
    rng = np.random.default_rng(0)
    for i in range(4):
        write_wav(tmp_path / f'musan/speech/librivox/s{i}.wav', rng.standard_normal(6000))
    write_wav(tmp_path / 'musan/music/fma/m0.wav', rng.standard_normal(9000))
    write_wav(tmp_path / 'musan/noise/free-sound/n0.wav', rng.standard_normal(1500))
    rir = np.zeros(400)
    rir[30] = 0.5  # a delayed, scaled delta: no change after alignment and unit-energy scaling
    write_wav(tmp_path / 'rirs/simulated_rirs/smallroom/Room001/r0.wav', rir)
    wave = rng.standard_normal(LENGTH).astype(np.float32)
    return str(tmp_path / 'musan'), str(tmp_path / 'rirs'), wave


@pytest.mark.parametrize('curve', CURVES, ids=lambda c: c.__name__)
def test_curve_continuous_within_unit_interval_with_fixed_endpoints(curve):
    def max_jump(num_points):
        return np.max(np.abs(np.diff(curve(np.linspace(0.0, 1.0, num_points)))))

    # A jump would stay the same size on a finer grid; circ's steepest step (at t=1) shrinks as sqrt(step).
    assert max_jump(1_000_001) < 2e-3
    assert max_jump(1_000_001) < max_jump(10_001) / 5
    y = curve(np.linspace(0.0, 1.0, 1_000_001))
    assert y.min() >= 0.0 and y.max() <= 1.0
    assert abs(curve(np.array([0.0]))[0]) < 1e-12 and abs(curve(np.array([1.0]))[0] - 1.0) < 1e-12


def test_bounce_touches_one_at_each_bounce():
    np.testing.assert_allclose(ease_bounce(np.array([1.0, 2.0, 2.5]) / 2.75), 1.0, atol=1e-12)
    np.testing.assert_allclose(ease_bounce(np.array([1.5, 2.25, 2.625]) / 2.75), [0.75, 0.9375, 0.984375])


def test_fade_envelope_endpoints_and_shape():
    quad = CURVES[1]
    fade_in = fade_envelope(101, quad, 0.2, fade_in=True)
    np.testing.assert_allclose(fade_in[[0, 50, 100]], [0.2, 0.2 + 0.8 * 0.25, 1.0])
    np.testing.assert_array_equal(fade_envelope(101, quad, 0.2, fade_in=False), fade_in[::-1])


def test_clip_to_ratio_of_min_and_max():
    wave = np.array([-2.0, -0.5, 0.0, 1.0, 4.0])
    np.testing.assert_array_equal(clip_to_ratio(wave, 0.5), [-1.0, -0.5, 0.0, 1.0, 2.0])


@pytest.mark.parametrize('snr_db', [0.0, 5.3, 13.0, 19.99])
def test_noise_at_snr_gives_the_drawn_snr(snr_db):
    rng = np.random.default_rng(1)
    speech, noise = 0.3 * rng.standard_normal(8000), 2.0 * rng.standard_normal(8000) + 0.1
    assert abs(power_db(speech) - power_db(noise_at_snr(speech, noise, snr_db)) - snr_db) < 1e-6


def test_noise_at_snr_silent_inputs_add_nothing():
    loud = np.ones(100)
    np.testing.assert_array_equal(noise_at_snr(np.zeros(100), loud, 10.0), np.zeros(100))
    np.testing.assert_array_equal(noise_at_snr(loud, np.zeros(100), 10.0), np.zeros(100))


def test_reverberate_delta_and_delayed_delta_leave_wave_unchanged():
    wave = np.random.default_rng(2).standard_normal(1000)
    np.testing.assert_allclose(reverberate(wave, np.array([1.0])), wave, atol=1e-12)
    delayed = np.zeros(300)
    delayed[120] = 0.01
    np.testing.assert_allclose(reverberate(wave, delayed), wave, atol=1e-12)


def test_reverberate_aligns_on_direct_path():
    wave = np.random.default_rng(3).standard_normal(1000)
    rir = np.zeros(200)
    rir[[40, 50, 90]] = [-0.5, 1.0, 0.25]  # a reflection before the direct path (peak at 50), one after
    ahead = np.r_[wave[10:], np.zeros(10)]  # wave[n + 10]
    behind = np.r_[np.zeros(40), wave[:-40]]  # wave[n - 40]
    expected = (wave - 0.5 * ahead + 0.25 * behind) / np.sqrt(1.0 + 0.25 + 0.0625)
    np.testing.assert_allclose(reverberate(wave, rir), expected, atol=1e-12)


def test_choose_kind_near_uniform():
    rng = np.random.default_rng(4)
    kinds = [choose_kind(rng) for _ in range(60000)]
    for kind in KINDS:
        assert abs(kinds.count(kind) / 60000 - 1 / 6) < 0.01


def test_missing_or_empty_folders_name_the_argument(corpus, tmp_path):
    musan, rirs, _ = corpus
    with pytest.raises(FileNotFoundError, match=r'path_musan: folder not found: .*nowhere/speech'):
        Augmenter(str(tmp_path / 'nowhere'), rirs)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match=r'path_rir: no \.wav files under .*empty'):
        Augmenter(musan, str(tmp_path / 'empty'))


def test_augmenter_deterministic_float32_same_length(corpus):
    musan, rirs, wave = corpus
    augmenter = Augmenter(musan, rirs, p=1.0, clip_p=0.5, ease_p=0.5)
    outputs = [augmenter(wave, np.random.default_rng(seed)) for seed in range(12)]
    again = [augmenter(wave, np.random.default_rng(seed)) for seed in range(12)]
    for out, repeat in zip(outputs, again):
        assert out.dtype == np.float32 and out.shape == wave.shape
        np.testing.assert_array_equal(out, repeat)
    assert len({out.tobytes() for out in outputs}) == 12


def forced(monkeypatch, kind):
    monkeypatch.setattr(augment, 'choose_kind', lambda rng: kind)


def fraction_changed(augmenter, wave, draws):
    return np.mean([not np.array_equal(augmenter(wave, np.random.default_rng(s)), wave) for s in range(draws)])


def test_augmenter_leaves_one_minus_p_of_crops_unchanged(corpus, monkeypatch):
    musan, rirs, wave = corpus
    forced(monkeypatch, 'music')
    assert abs(fraction_changed(Augmenter(musan, rirs, p=0.6, clip_p=0.0, ease_p=0.0), wave, 2000) - 0.6) < 0.035


@pytest.mark.parametrize('clip_p, ease_p', [(0.3, 0.0), (0.0, 0.3)])
def test_clipping_and_easing_only_on_augmented_crops(corpus, monkeypatch, clip_p, ease_p):
    """Kind "none" adds nothing: a crop changes only when clipped or eased, which happens to
    p x 0.3 = 0.18 of the crops (0.30 if the crops left as they are were clipped or eased too)."""
    musan, rirs, wave = corpus
    forced(monkeypatch, 'none')
    augmenter = Augmenter(musan, rirs, p=0.6, clip_p=clip_p, ease_p=ease_p)
    assert abs(fraction_changed(augmenter, wave, 3000) - 0.18) < 0.03


@pytest.mark.parametrize('kind, low, high', [('noise', 0, 15), ('music', 5, 25)])
def test_augmenter_single_noise_file_snr_in_range(corpus, monkeypatch, kind, low, high):
    musan, rirs, wave = corpus
    forced(monkeypatch, kind)
    augmenter = Augmenter(musan, rirs, p=1.0, clip_p=0.0, ease_p=0.0)
    snrs = [power_db(wave) - power_db(augmenter(wave, np.random.default_rng(s)) - wave) for s in range(40)]
    assert low - 1e-3 < min(snrs) and max(snrs) < high + 1e-3
    assert max(snrs) - min(snrs) > (high - low) / 2  # drawn, not fixed


def test_augmenter_speech_mixes_three_to_eight_files(corpus, monkeypatch):
    musan, rirs, wave = corpus
    forced(monkeypatch, 'speech')
    counts = []
    original = augment.read_random_crop

    def counting_read(path, num_samples, rng):
        counts[-1] += 1
        return original(path, num_samples, rng)

    monkeypatch.setattr(augment, 'read_random_crop', counting_read)
    augmenter = Augmenter(musan, rirs, p=1.0, clip_p=0.0, ease_p=0.0)
    for seed in range(60):
        counts.append(0)
        augmenter(wave, np.random.default_rng(seed))
    assert set(counts) == {3, 4, 5, 6, 7, 8}


def test_augmenter_delta_rir_keeps_wave(corpus, monkeypatch):
    musan, rirs, wave = corpus
    forced(monkeypatch, 'rir')
    out = Augmenter(musan, rirs, p=1.0, clip_p=0.0, ease_p=0.0)(wave, np.random.default_rng(0))
    np.testing.assert_allclose(out, wave, atol=1e-6)


def recording_reads(monkeypatch):
    """Every MUSAN crop the augmenter reads, as (path, crop), in order."""
    reads = []
    original = augment.read_random_crop

    def recording_read(path, num_samples, rng):
        reads.append((path, original(path, num_samples, rng).astype(np.float64)))
        return reads[-1][1]

    monkeypatch.setattr(augment, 'read_random_crop', recording_read)
    return reads


def scaled_to(reference, noise, snr_db):
    return noise * np.sqrt(np.mean(reference**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))


def test_babble_is_the_mean_of_the_crops_scaled_to_one_snr(corpus, monkeypatch):
    musan, rirs, wave = corpus
    forced(monkeypatch, 'speech')
    monkeypatch.setitem(augment.SNR_DB, 'speech', (13.0, 13.0))
    reads = recording_reads(monkeypatch)
    out = Augmenter(musan, rirs, p=1.0, clip_p=0.0, ease_p=0.0)(wave, np.random.default_rng(5))
    assert len(reads) >= 3
    clean = wave.astype(np.float64)
    babble = np.mean([crop for _, crop in reads], axis=0)
    np.testing.assert_allclose(out, clean + scaled_to(clean, babble, 13.0), rtol=1e-5, atol=1e-6)


def test_babble_snr_within_13_to_20_db(corpus, monkeypatch):
    """Summing the crops, each at its own 13-20 dB, would put 3-8 x the power in: 5-9 dB lower."""
    musan, rirs, wave = corpus
    forced(monkeypatch, 'speech')
    augmenter = Augmenter(musan, rirs, p=1.0, clip_p=0.0, ease_p=0.0)
    snrs = [power_db(wave) - power_db(augmenter(wave, np.random.default_rng(s)) - wave) for s in range(40)]
    assert 13 - 1e-3 < min(snrs) and max(snrs) < 20 + 1e-3
    assert max(snrs) - min(snrs) > 3.5


def test_speech_music_scales_the_music_against_the_babbled_wave(corpus, monkeypatch):
    musan, rirs, wave = corpus
    forced(monkeypatch, 'speech_music')
    monkeypatch.setitem(augment.SNR_DB, 'speech', (13.0, 13.0))
    monkeypatch.setitem(augment.SNR_DB, 'music', (5.0, 5.0))
    reads = recording_reads(monkeypatch)
    out = Augmenter(musan, rirs, p=1.0, clip_p=0.0, ease_p=0.0)(wave, np.random.default_rng(6))
    speech = [crop for path, crop in reads if '/speech/' in path]
    (music,) = [crop for path, crop in reads if '/music/' in path]
    clean = wave.astype(np.float64)
    babbled = clean + scaled_to(clean, np.mean(speech, axis=0), 13.0)
    np.testing.assert_allclose(out, babbled + scaled_to(babbled, music, 5.0), rtol=1e-5, atol=1e-6)
    # the test can tell: music scaled against the clean wave is 0.2 dB quieter
    assert not np.allclose(out, babbled + scaled_to(clean, music, 5.0), rtol=1e-5, atol=1e-6)


def test_augmenter_clipping_bounds(corpus, monkeypatch):
    musan, rirs, wave = corpus
    forced(monkeypatch, 'none')
    augmenter = Augmenter(musan, rirs, p=1.0, clip_p=1.0, ease_p=0.0)
    for seed in range(20):
        out = augmenter(wave, np.random.default_rng(seed))
        ratio = out.max() / wave.max()
        assert 0.5 <= ratio <= 0.9
        np.testing.assert_allclose(out, np.clip(wave, ratio * wave.min(), ratio * wave.max()), rtol=1e-6)


def test_augmenter_easing_envelope_endpoints(corpus, monkeypatch):
    musan, rirs, _ = corpus
    ones = np.ones(LENGTH, np.float32)
    forced(monkeypatch, 'none')
    augmenter = Augmenter(musan, rirs, p=1.0, clip_p=0.0, ease_p=1.0)
    directions = set()
    for seed in range(20):
        envelope = augmenter(ones, np.random.default_rng(seed))
        low, high = sorted([envelope[0], envelope[-1]])
        assert high == pytest.approx(1.0, abs=1e-6) and 0.1 <= low <= 0.3
        assert envelope.min() >= low - 1e-6 and envelope.max() <= 1.0 + 1e-6
        directions.add(envelope[0] < envelope[-1])
    assert directions == {True, False}


def test_augmenter_silent_rir_names_path_rir(corpus, monkeypatch, tmp_path):
    musan, _, wave = corpus
    write_wav(tmp_path / 'silent_rirs/r.wav', np.zeros(100))
    forced(monkeypatch, 'rir')
    with pytest.raises(ValueError, match=r'path_rir: .*r\.wav is silent'):
        Augmenter(musan, str(tmp_path / 'silent_rirs'), p=1.0)(wave, np.random.default_rng(0))
