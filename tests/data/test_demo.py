import csv
import glob
import os
import re

import numpy as np
import pytest
import soundfile as sf

from data import demo, voices

TINY = dict(
    num_train_speakers=3,
    num_test_speakers=6,
    num_vox1_o_speakers=2,
    num_val_speakers=2,
    videos_per_speaker=2,
    utterances_per_video=2,
    num_musan_per_kind=3,
    num_rirs=2,
)
TRIAL_LISTS = ('veri_test2.txt', 'list_test_all2.txt', 'list_test_hard2.txt', 'demo_val.txt')
TEST_LISTS = TRIAL_LISTS[:3]


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('cache'))
    return root, demo.prepare_demo(root, **TINY)


def wavs(folder):
    paths = glob.glob(f'{folder}/**/*.wav', recursive=True)
    return sorted(os.path.relpath(path, folder) for path in paths)


def read_trials(path):
    with open(path) as file:
        return [(int(label), enroll, test) for label, enroll, test in (line.split() for line in file)]


def read_speakers(paths):
    with open(os.path.join(os.path.dirname(paths['path_train']), 'speakers.csv')) as file:
        return {row['id']: row for row in csv.DictReader(file)}


def test_layout_is_voxceleb_like(corpus):
    root, paths = corpus
    assert os.listdir(root) == [os.path.basename(os.path.dirname(paths['path_train']))]
    pattern = re.compile(r'^id\d{5}/[A-Za-z0-9_-]{11}/\d{5}\.wav$')
    train, test = wavs(paths['path_train']), wavs(paths['path_test'])
    assert all(pattern.match(name) for name in train + test)
    assert len(train) == 3 * 2 * 2 and len(test) == (6 + 2) * 2 * 2  # test speakers and validation speakers
    train_ids = {n.split('/')[0] for n in train}
    test_ids = {n.split('/')[0] for n in test if not n.startswith('id3')}
    val_ids = {n.split('/')[0] for n in test if n.startswith('id3')}
    assert len(train_ids) == 3 and len(test_ids) == 6 and len(val_ids) == 2 and not train_ids & test_ids
    assert {len({n.split('/')[1] for n in test if n.startswith(s)}) for s in test_ids} == {2}
    assert sorted(os.listdir(paths['path_trials'])) == sorted(TRIAL_LISTS)
    for kind in ('speech', 'music', 'noise'):
        assert len(wavs(os.path.join(paths['path_musan'], kind))) == 3
    assert len(wavs(paths['path_rir'])) == 2
    speakers = read_speakers(paths)
    assert {i for i, row in speakers.items() if row['split'] == 'train'} == train_ids
    assert {i for i, row in speakers.items() if row['split'] == 'test'} == test_ids
    assert {i for i, row in speakers.items() if row['split'] == 'val'} == val_ids
    assert sum(row['split'] == 'musan' for row in speakers.values()) == 3


def test_wavs_are_16k_mono_pcm16_of_the_stated_durations(corpus):
    _, paths = corpus
    for key, (low, high) in (('path_train', demo.TRAIN_SECONDS), ('path_test', demo.TEST_SECONDS)):
        for name in wavs(paths[key]):
            info = sf.info(os.path.join(paths[key], name))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, 'PCM_16')
            assert low <= info.frames / 16000 <= high
    for kind in ('speech', 'music', 'noise'):
        for name in wavs(os.path.join(paths['path_musan'], kind)):
            audio, rate = sf.read(os.path.join(paths['path_musan'], kind, name))
            assert rate == 16000 and audio.ndim == 1 and 4.0 <= len(audio) / rate <= 8.0
            assert np.abs(audio).max() == pytest.approx(0.5, abs=1e-4)


def test_rirs_have_a_direct_path_and_a_decay_of_rt60_0_2_to_0_9_s(corpus):
    _, paths = corpus
    for name in wavs(paths['path_rir']):
        rir, rate = sf.read(os.path.join(paths['path_rir'], name))
        assert rate == 16000 and np.argmax(np.abs(rir)) < 0.01 * rate
        # Schroeder backward integration: the time from -5 to -25 dB, times 3, is the RT60.
        energy = np.cumsum(rir[::-1] ** 2)[::-1]
        decay_db = 10 * np.log10(energy / energy[0])
        rt60 = 3 * (np.argmax(decay_db < -25) - np.argmax(decay_db < -5)) / rate
        assert 0.15 < rt60 < 1.0


def test_trial_lists_reference_test_files_with_correct_labels(corpus):
    _, paths = corpus
    files = set(wavs(paths['path_test']))
    for name in TRIAL_LISTS:
        trials = read_trials(os.path.join(paths['path_trials'], name))
        assert trials and all(enroll in files and test in files for _, enroll, test in trials)
        for label, enroll, test in trials:
            assert label == int(enroll.split('/')[0] == test.split('/')[0])
            if label:
                assert enroll.split('/')[1] != test.split('/')[1]  # targets cross videos
        assert sum(label for label, _, _ in trials) * 2 == len(trials)
        assert len({(enroll, test) for _, enroll, test in trials}) == len(trials)


def test_o_is_a_subset_of_e_and_h_pairs_share_a_group(corpus):
    _, paths = corpus
    speakers = read_speakers(paths)
    lists = {name: read_trials(os.path.join(paths['path_trials'], name)) for name in TRIAL_LISTS}
    ids = lambda trials: {path.split('/')[0] for _, enroll, test in trials for path in (enroll, test)}
    o_ids, e_ids = ids(lists['veri_test2.txt']), ids(lists['list_test_all2.txt'])
    assert len(o_ids) == 2 and len(e_ids) == 6 and o_ids < e_ids
    # the validation list: its own speakers, in no test list and not in training
    val_ids = ids(lists['demo_val.txt'])
    assert len(val_ids) == 2 and not val_ids & (e_ids | ids(lists['list_test_hard2.txt']))
    assert {row['split'] for i, row in speakers.items() if i in val_ids} == {'val'}
    assert {speakers[i]['group'] for i in o_ids} == {'m', 'f'}
    group = lambda path: speakers[path.split('/')[0]]['group']
    assert all(group(enroll) == group(test) for _, enroll, test in lists['list_test_hard2.txt'])


def test_similar_voices_pairs_each_speaker_with_its_nearest_in_group():
    f0s = [100, 102, 104, 106, 180, 182, 184, 186]
    speakers = [{'id': f'id{i}', 'group': 'm', 'f0_hz': f0, 'formant_scale': 1.0} for i, f0 in enumerate(f0s)]
    speakers.append({'id': 'id9', 'group': 'f', 'f0_hz': 101, 'formant_scale': 1.0})
    pairs = demo.similar_voices(speakers)
    expected = {
        (f'id{a}', f'id{b}') for cluster in ((0, 1, 2, 3), (4, 5, 6, 7)) for a in cluster for b in cluster if a < b
    }
    assert set(pairs) == expected


def test_second_call_reuses_the_corpus(corpus, monkeypatch):
    root, paths = corpus
    first = os.path.join(paths['path_test'], wavs(paths['path_test'])[0])
    mtime = os.stat(first).st_mtime_ns
    monkeypatch.setattr(demo, 'write_corpus', lambda *args: pytest.fail('regenerated'))
    assert demo.prepare_demo(root, **TINY) == paths
    assert os.stat(first).st_mtime_ns == mtime


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    def killed(folder, params):
        os.makedirs(os.path.join(folder, 'train'))
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, 'write_corpus', killed)
    with pytest.raises(KeyboardInterrupt):
        demo.prepare_demo(str(tmp_path), **TINY)
    assert os.listdir(tmp_path) == []


def test_same_seed_is_bit_identical_and_other_parameters_get_other_folders(corpus, tmp_path):
    _, paths = corpus
    again = demo.prepare_demo(str(tmp_path / 'again'), **TINY)
    assert os.path.basename(os.path.dirname(again['path_train'])) == os.path.basename(
        os.path.dirname(paths['path_train'])
    )
    first, second = (os.path.dirname(p['path_train']) for p in (paths, again))
    listing = lambda top: sorted(os.path.relpath(p, top) for p in glob.glob(f'{top}/**/*.*', recursive=True))
    names = listing(first)
    assert names == listing(second) and len(names) > 30
    for name in names:
        with open(os.path.join(first, name), 'rb') as a, open(os.path.join(second, name), 'rb') as b:
            assert a.read() == b.read(), name
    other = demo.prepare_demo(str(tmp_path / 'again'), **{**TINY, 'seed': 2})
    assert os.path.dirname(other['path_train']) != second
    assert len(os.listdir(tmp_path / 'again')) == 2
    assert wavs(other['path_train']) != wavs(again['path_train'])


def test_stft_round_trip_is_exact():
    signal = np.random.default_rng(0).standard_normal(16000 + 37)
    assert np.allclose(voices.istft(voices.stft(signal), len(signal)), signal, atol=1e-5)


def test_formant_envelope_is_one_at_dc_and_peaks_at_the_formant():
    envelope = voices.formant_envelope(np.array([[500.0]]), np.array([[100.0]]))[0]
    assert envelope[0] == pytest.approx(1.0)
    assert voices.FREQS[np.argmax(envelope)] == 500.0  # bin 16 of 31.25 Hz
    peak = (500**2 + 50**2) / np.sqrt(50**2 * (1000**2 + 50**2))  # |H(F)| of one resonator
    assert envelope.max() == pytest.approx(peak, rel=1e-5)


def test_glottal_source_repeats_at_the_f0_period():
    voice = {'jitter': 0.0, 'shimmer': 0.0, 'breathiness': 0.0, 'open_quotient': 0.6}
    source = voices.glottal_source(np.full(16000, 125.0), voice, np.random.default_rng(0))
    assert np.sqrt(np.mean(source**2)) == pytest.approx(1.0)
    assert np.allclose(source[1000:2000], source[1128:2128])  # 16000 / 125 = 128 samples
    lags = np.arange(60, 300)
    correlation = [np.dot(source[1000:9000], source[1000 + lag : 9000 + lag]) for lag in lags]
    assert lags[np.argmax(correlation)] == 128


def test_population_shares_no_voice_with_the_corpus_and_is_reused(corpus, tmp_path, monkeypatch):
    """The teacher's pre-training population: its own ids and voices (none of the corpus's training,
    test, validation or MUSAN voices), every video its own session, made once."""
    root, paths = corpus
    folder = demo.prepare_population(root, num_speakers=6, videos_per_speaker=2, utterances_per_video=2)
    names = wavs(folder)
    assert len(names) == 6 * 2 * 2
    ids = {name.split('/')[0] for name in names}
    assert len(ids) == 6 and all(i.startswith('id4') for i in ids)
    corpus_speakers = read_speakers(paths)
    assert not ids & set(corpus_speakers)
    with open(os.path.join(folder, 'speakers.csv')) as file:
        population = {row['id']: row for row in csv.DictReader(file)}
    voice = lambda row: (row['f0_hz'], row['formant_scale'], row['tilt_db_oct'])
    assert not {voice(row) for row in population.values()} & {voice(row) for row in corpus_speakers.values()}
    monkeypatch.setattr(demo, 'write_population', lambda *args: pytest.fail('regenerated'))
    assert demo.prepare_population(root, num_speakers=6, videos_per_speaker=2, utterances_per_video=2) == folder
