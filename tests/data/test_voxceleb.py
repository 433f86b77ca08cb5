import os

import numpy as np
import pytest
import soundfile as sf

from data.voxceleb import Trials, class_weights, read_trials, scan_voxceleb

VOX1_O = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'shared', 'voxceleb', 'veri_test.txt')


def touch(path):
    """A one-second 16 kHz wav or flac (the scan reads headers), or an empty file of any other kind."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if path.endswith(('.wav', '.flac')):
        sf.write(path, np.zeros(16000, np.float32), 16000)
    else:
        open(path, 'wb').close()


@pytest.fixture
def vox_tree(tmp_path):
    for rel in [
        'id002/vidB/00001.wav',
        'id001/vidA/00002.wav',
        'id001/vidA/00001.wav',
        'id001/vidC/deep/00003.wav',
        'id003/v/00001.wav',
        'id002/vidB/notes.txt',
        'loose.wav',
    ]:
        touch(str(tmp_path / rel))
    return tmp_path


def test_scan_voxceleb_sorted_paths_and_speaker_labels(vox_tree):
    manifest = scan_voxceleb(str(vox_tree))
    rel = [os.path.relpath(p, vox_tree) for p in manifest.paths]
    assert rel == [
        'id001/vidA/00001.wav',
        'id001/vidA/00002.wav',
        'id001/vidC/deep/00003.wav',
        'id002/vidB/00001.wav',
        'id003/v/00001.wav',
    ]
    assert all(os.path.isabs(p) for p in manifest.paths)
    assert manifest.speakers == ['id001', 'id002', 'id003']
    assert manifest.labels.dtype == np.int64
    np.testing.assert_array_equal(manifest.labels, [0, 0, 0, 1, 2])


def test_scan_voxceleb_missing_or_empty_root_names_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'path_train: folder not found: .*absent'):
        scan_voxceleb(str(tmp_path / 'absent'))
    (tmp_path / 'empty' / 'id001').mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r'path_test: no \.wav or \.flac files under .*empty'):
        scan_voxceleb(str(tmp_path / 'empty'), argument='path_test')


def test_class_weights_total_over_speaker_count():
    weights = class_weights(np.array([0, 0, 0, 1, 2, 2]), 4)
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, [6 / 3, 6 / 1, 6 / 2, 0.0])


def test_read_trials_vox1_o_counts():
    trials = read_trials(VOX1_O)
    assert len(trials.labels) == 37720 and trials.labels.dtype == np.int64
    assert trials.labels.sum() == 18860
    assert len(trials.utterances()) == 4715
    assert (trials.labels[0], trials.enroll[0], trials.test[0]) == (
        1,
        'id10270/x6uYqmx31kE/00001.wav',
        'id10270/8jEAjG6SegY/00008.wav',
    )
    assert (trials.labels[1], trials.test[1]) == (0, 'id10300/ize_eiCFEg0/00003.wav')


def test_indices_point_back_at_the_keys():
    trials = read_trials(VOX1_O)
    keys = trials.utterances()
    assert keys == sorted(keys)
    enroll, test = trials.indices(keys)
    assert enroll.shape == test.shape == (37720,)
    assert [keys[i] for i in enroll] == trials.enroll
    assert [keys[i] for i in test] == trials.test


def test_indices_unknown_key_is_named():
    trials = Trials(labels=np.array([1]), enroll=['a.wav'], test=['b.wav'])
    with pytest.raises(KeyError, match='b.wav'):
        trials.indices(['a.wav'])


def write(tmp_path, text, name='trials.txt'):
    path = tmp_path / name
    path.write_bytes(text.encode())
    return str(path)


def test_read_trials_blank_lines_tabs_and_crlf(tmp_path):
    trials = read_trials(write(tmp_path, '1 a/x.wav b/y.wav\r\n\r\n0\tc/z.wav  a/x.wav\r\n\n'))
    np.testing.assert_array_equal(trials.labels, [1, 0])
    assert trials.enroll == ['a/x.wav', 'c/z.wav'] and trials.test == ['b/y.wav', 'a/x.wav']
    assert trials.utterances() == ['a/x.wav', 'b/y.wav', 'c/z.wav']


@pytest.mark.parametrize(
    'text, line, why',
    [
        ('1 a b\n0 c\n1 d e\n', 2, '2 fields'),
        ('1 a b\n\n1 a b 0\nc d\n', 3, '4 fields'),
        ('1 a b\n\n0 c d\nx e f\n', 4, 'label must be 0 or 1'),
        ('1 a b\n2 c d\n', 2, 'label must be 0 or 1'),
    ],
)
def test_read_trials_malformed_line_is_named(tmp_path, text, line, why):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=rf'path_trials: .*trials\.txt line {line}: {why}'):
        read_trials(path)


def test_read_trials_missing_or_empty_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'path_trials: trial list not found: .*nope\.txt'):
        read_trials(str(tmp_path / 'nope.txt'))
    with pytest.raises(ValueError, match='path_trials: .*holds no trials'):
        read_trials(write(tmp_path, '\n\n'))


def test_flac_files_are_training_files_too(vox_tree):
    touch(str(vox_tree / 'id004/vidD/00001.flac'))
    manifest = scan_voxceleb(str(vox_tree))
    assert manifest.speakers[-1] == 'id004' and manifest.paths[-1].endswith('id004/vidD/00001.flac')


def test_an_m4a_tree_fails_at_once_with_the_command_that_converts_it(tmp_path):
    touch(str(tmp_path / 'dev' / 'aac' / 'id00012' / '21Uxsk56VDQ' / '00001.m4a'))
    root = tmp_path / 'dev' / 'aac'
    with pytest.raises(FileNotFoundError) as error:
        scan_voxceleb(str(root))
    message = str(error.value)
    assert message.startswith(f'path_train: {root} holds .m4a files (VoxCeleb2 as shipped)')
    assert (
        f"find {root} -name '*.m4a' -exec sh -c 'ffmpeg -loglevel error -n -i \"$0\" -ac 1 -ar 16000 "
        '"${0%.m4a}.wav"\' {} \\;' in message
    )
