import os
import time

import numpy as np
import pytest
import soundfile as sf

from data import manifest, voxceleb
from data.manifest import cache_path, scan_tree
from data.voxceleb import identify_voxceleb, scan_voxceleb

HOUR_NS = 3600 * 10**9


def write_audio(root, rel, frames=16000, rate=16000, channels=1):
    """A real wav / flac (by the name's extension) of `frames` frames of noise."""
    path = os.path.join(str(root), rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    wave = np.random.default_rng(frames).uniform(-0.5, 0.5, (frames, channels)).astype(np.float32)
    sf.write(path, wave, rate)
    return path


def age(root):
    """Set every folder's mtime an hour back, as for a tree unpacked long before its scan."""
    for folder, _, _ in os.walk(str(root)):
        then = os.stat(folder).st_mtime_ns - HOUR_NS
        os.utime(folder, ns=(then, then))


def headers_forbidden(monkeypatch):
    """Make any header read fail the test: a scan that still works was served from the cache."""

    def read_header(path):
        raise AssertionError(f'header read of {path}')

    monkeypatch.setattr(manifest, '_read_header', read_header)


def count_header_reads(monkeypatch):
    calls = []
    real = manifest._read_header
    monkeypatch.setattr(manifest, '_read_header', lambda path: calls.append(path) or real(path))
    return calls


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / 'vox'
    write_audio(root, 'id001/vidA/00001.wav', frames=24000)
    write_audio(root, 'id001/vidA/00002.wav', frames=22051, rate=22050)
    write_audio(root, 'id001/vidB/00001.flac', frames=20000)
    write_audio(root, 'id002/vidC/00001.wav', frames=17000, channels=2)
    write_audio(root, 'loose.wav')
    (root / 'id002' / 'vidC' / 'notes.txt').write_text('not audio')
    return root


def test_headers_give_frames_rates_channels_of_what_was_written(tree, tmp_path):
    audio = scan_tree(str(tree), None, 'path_train')
    assert audio.root == str(tree) and audio.unreadable == []
    assert audio.rel_paths == [
        'id001/vidA/00001.wav',
        'id001/vidA/00002.wav',
        'id001/vidB/00001.flac',
        'id002/vidC/00001.wav',
    ]
    for array, expected in (
        (audio.frames, [24000, 22051, 20000, 17000]),
        (audio.rates, [16000, 22050, 16000, 16000]),
        (audio.channels, [1, 1, 1, 2]),
    ):
        assert array.dtype == np.int64
        np.testing.assert_array_equal(array, expected)
    assert not (tmp_path / 'cache').exists()


def test_scan_voxceleb_lengths_in_16k_samples_and_conversion_notes(tree):
    found = scan_voxceleb(str(tree))
    assert found.paths[1] == os.path.join(str(tree), 'id001/vidA/00002.wav')
    np.testing.assert_array_equal(found.lengths, [24000, 16001, 20000, 17000])  # ceil(22051 * 16000 / 22050)
    assert found.lengths.dtype == found.rates.dtype == found.channels.dtype == np.int64
    np.testing.assert_array_equal(found.rates, [16000, 22050, 16000, 16000])
    np.testing.assert_array_equal(found.channels, [1, 1, 1, 2])
    np.testing.assert_array_equal(found.labels, [0, 0, 0, 1])
    assert found.notes == [
        'path_train: 1 file at 22050 Hz is resampled to 16 kHz',
        'path_train: 1 file of 2 channels is mixed down to mono',
    ]


def test_conversion_notes_count_per_rate_and_none_for_16k_mono(tmp_path):
    root = tmp_path / 'vox'
    for i in range(3):
        write_audio(root, f'id001/v/{i}.wav', frames=16000, rate=22050)
    write_audio(root, 'id001/v/8k.wav', frames=8000, rate=8000)
    write_audio(root, 'id001/v/stereo.wav', channels=2)
    write_audio(root, 'id001/v/six.wav', channels=6)
    assert scan_voxceleb(str(root)).notes == [
        'path_train: 3 files at 22050 Hz, 1 at 8000 Hz are resampled to 16 kHz',
        'path_train: 1 file of 2 channels, 1 of 6 channels are mixed down to mono',
    ]
    plain = tmp_path / 'plain'
    write_audio(plain, 'id001/v/1.wav')
    assert scan_voxceleb(str(plain)).notes == []


def test_second_scan_is_served_from_the_cache(tree, tmp_path, monkeypatch):
    cache = str(tmp_path / 'cache')
    first = scan_tree(str(tree), cache, 'path_train')
    assert os.listdir(os.path.join(cache, 'manifests')) == [os.path.basename(cache_path(cache, str(tree)))]
    headers_forbidden(monkeypatch)
    for root in (str(tree), str(tree) + '/.'):  # the same tree, spelled differently
        again = scan_tree(root, cache, 'path_train')
        assert again.rel_paths == first.rel_paths and again.unreadable == first.unreadable
        np.testing.assert_array_equal(
            np.stack([again.frames, again.rates, again.channels]), np.stack([first.frames, first.rates, first.channels])
        )
    with pytest.raises(AssertionError, match='header read'):
        scan_tree(str(tree), None, 'path_train')


def test_an_old_tree_is_served_from_the_cache_without_listing_its_folders(tree, tmp_path, monkeypatch):
    age(tree)
    cache = str(tmp_path / 'cache')
    scan_tree(str(tree), cache, 'path_train')
    headers_forbidden(monkeypatch)
    monkeypatch.setattr(manifest, '_list_folder', lambda *args: pytest.fail('a folder was listed'))
    assert len(scan_tree(str(tree), cache, 'path_train').rel_paths) == 4


@pytest.mark.parametrize('old', [False, True])
def test_a_file_added_to_a_video_folder_is_found(tree, tmp_path, monkeypatch, old):
    if old:
        age(tree)
    cache = str(tmp_path / 'cache')
    scan_tree(str(tree), cache, 'path_train')
    write_audio(tree, 'id001/vidA/00003.wav', frames=30000)
    calls = count_header_reads(monkeypatch)
    audio = scan_tree(str(tree), cache, 'path_train')
    assert 'id001/vidA/00003.wav' in audio.rel_paths and len(calls) == 5
    assert audio.frames[audio.rel_paths.index('id001/vidA/00003.wav')] == 30000
    headers_forbidden(monkeypatch)
    assert scan_tree(str(tree), cache, 'path_train').rel_paths == audio.rel_paths  # and cached again


def test_a_file_added_within_the_timestamp_granularity_is_found(tree, tmp_path):
    """A change that leaves the folder's mtime as it was (same timestamp tick as the scan) is still seen."""
    cache = str(tmp_path / 'cache')
    scan_tree(str(tree), cache, 'path_train')
    folder = tree / 'id001' / 'vidA'
    stamp = os.stat(folder).st_mtime_ns
    write_audio(tree, 'id001/vidA/00003.wav')
    os.utime(folder, ns=(stamp, stamp))
    assert 'id001/vidA/00003.wav' in scan_tree(str(tree), cache, 'path_train').rel_paths


def test_a_new_speaker_and_a_removed_file_are_seen(tree, tmp_path):
    age(tree)
    cache = str(tmp_path / 'cache')
    scan_voxceleb(str(tree), cache_dir=cache)
    write_audio(tree, 'id003/vidD/00001.wav')
    found = scan_voxceleb(str(tree), cache_dir=cache)
    assert found.speakers == ['id001', 'id002', 'id003']
    assert found.paths[-1] == os.path.join(str(tree), 'id003/vidD/00001.wav')
    age(tree)
    os.remove(tree / 'id001' / 'vidB' / '00001.flac')
    assert len(scan_voxceleb(str(tree), cache_dir=cache).paths) == 4


@pytest.mark.parametrize('damage', ['garbage', 'empty', 'truncated', 'npy', 'other root'])
def test_a_damaged_cache_file_means_a_rescan(tree, tmp_path, monkeypatch, damage):
    cache = str(tmp_path / 'cache')
    first = scan_tree(str(tree), cache, 'path_train')
    path = cache_path(cache, str(tree))
    raw = open(path, 'rb').read()
    if damage == 'other root':  # a valid cache of another tree under this tree's name
        other = tmp_path / 'other'
        write_audio(other, 'id009/v/1.wav')
        scan_tree(str(other), cache, 'path_train')
        raw = open(cache_path(cache, str(other)), 'rb').read()
    if damage == 'npy':  # a plain array, not an archive
        np.save(path + '.npy', np.arange(3))
        raw = open(path + '.npy', 'rb').read()
    with open(path, 'wb') as f:
        f.write({'garbage': os.urandom(500), 'empty': b'', 'truncated': raw[: len(raw) // 2]}.get(damage, raw))
    calls = count_header_reads(monkeypatch)
    assert scan_tree(str(tree), cache, 'path_train').rel_paths == first.rel_paths
    assert len(calls) == 4


def test_short_and_unreadable_files_are_left_out_and_named(tree):
    write_audio(tree, 'id001/vidA/short1.wav', frames=7999)
    write_audio(tree, 'id002/vidC/short2.wav', frames=10800, rate=22050)  # 7836 samples at 16 kHz
    write_audio(tree, 'id002/vidC/half.wav', frames=8000)  # exactly 0.5 s: kept
    write_audio(tree, 'id003/v/only_short.wav', frames=100)
    (tree / 'id002' / 'vidC' / 'broken.wav').write_bytes(os.urandom(300))
    (tree / 'id002' / 'vidC' / 'empty.flac').write_bytes(b'')
    audio = scan_tree(str(tree), None, 'path_train')
    assert audio.unreadable == ['id002/vidC/broken.wav', 'id002/vidC/empty.flac']
    assert not set(audio.unreadable) & set(audio.rel_paths)
    found = scan_voxceleb(str(tree))
    rel = [os.path.relpath(p, tree) for p in found.paths]
    assert 'id002/vidC/half.wav' in rel and not any('short' in p or p in audio.unreadable for p in rel)
    assert found.speakers == ['id001', 'id002']  # id003 had only a short file
    assert found.notes[:2] == [
        'path_train: 2 files whose header cannot be read are left out: id002/vidC/broken.wav, id002/vidC/empty.flac',
        'path_train: 3 files shorter than 0.5 s are left out: id001/vidA/short1.wav, id002/vidC/short2.wav, '
        'id003/v/only_short.wav',
    ]
    assert len(found.paths) == len(found.lengths) == len(found.labels) == 5


def test_no_usable_file_names_the_argument_and_why(tmp_path):
    write_audio(tmp_path, 'id001/v/1.wav', frames=100)
    (tmp_path / 'id001' / 'v' / '2.wav').write_bytes(b'RIFF')
    with pytest.raises(
        FileNotFoundError,
        match=r'^path_train: no usable audio under .*1 file whose header cannot '
        r'be read is left out: id001/v/2\.wav; .*1 file shorter than 0\.5 s',
    ):
        scan_voxceleb(str(tmp_path))


@pytest.mark.parametrize(
    'speakers, expected',
    [
        (['id10001', 'id10270', 'id11251'], 'VoxCeleb1'),
        (['id00012', 'id09272'], 'VoxCeleb2'),
        (['id00000', 'id00089'], 'VoxCeleb2'),  # the demo's training ids: VoxCeleb2-like
        (['id10000', 'id10001'], None),  # the demo's test ids start at id10000, below VoxCeleb1's
        (['id11252'], None),
        (['id00012', 'id10001'], None),  # both corpora in one tree: no official count
        (['id1001'], None),
        (['spk001'], None),
        ([], None),
    ],
)
def test_identify_voxceleb(speakers, expected):
    assert identify_voxceleb(speakers) == expected


def vox_tree(root, speakers, files_each=2):
    for speaker in speakers:
        for i in range(files_each):
            write_audio(root, f'{speaker}/video/{i:05d}.wav')
    return str(root)


def warnings_of(found):
    return [note for note in found.notes if note.startswith('warning:')]


def test_a_partial_voxceleb2_gets_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(voxceleb, 'OFFICIAL_SETS', {**voxceleb.OFFICIAL_SETS, 'VoxCeleb2 dev': (12, 4)})
    root = vox_tree(tmp_path / 'partial', ['id00012', 'id00015'])  # half the speakers
    assert warnings_of(scan_voxceleb(root)) == [
        'warning: path_train holds 4 files of 2 speakers where VoxCeleb2 dev has 12 files of 4: '
        'a partial download, or files added?'
    ]
    complete = vox_tree(tmp_path / 'complete', ['id00012', 'id00015', 'id00017', 'id00020'], files_each=3)
    assert warnings_of(scan_voxceleb(complete)) == []
    subset = vox_tree(tmp_path / 'subset', ['id00012'])  # under half the speakers: a subset on purpose
    assert warnings_of(scan_voxceleb(subset)) == []


def test_a_voxceleb1_tree_is_compared_with_dev_test_or_both(tmp_path, monkeypatch):
    monkeypatch.setattr(
        voxceleb,
        'OFFICIAL_SETS',
        {'VoxCeleb2 dev': (1, 1), 'VoxCeleb1 dev': (9, 2), 'VoxCeleb1 dev+test': (9, 3), 'VoxCeleb1 test': (9, 1)},
    )
    for name, speakers in (
        ('VoxCeleb1 dev', ['id10001', 'id11251']),
        ('VoxCeleb1 test', ['id10270']),
        ('VoxCeleb1 dev+test', ['id10001', 'id10309', 'id11251']),
    ):
        (warning,) = warnings_of(scan_voxceleb(vox_tree(tmp_path / name, speakers)))
        assert f' where {name} has 9 files' in warning


def test_a_demo_like_tree_gets_no_note(tmp_path):
    train = vox_tree(tmp_path / 'train', [f'id{i:05d}' for i in range(90)], files_each=1)
    test = vox_tree(tmp_path / 'test', [f'id{10000 + i:05d}' for i in range(24)], files_each=1)
    assert scan_voxceleb(train).notes == [] and scan_voxceleb(test, 'path_test').notes == []


def test_missing_folder_and_m4a_tree_name_the_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'^path_train: folder not found: .*absent'):
        scan_tree(str(tmp_path / 'absent'), str(tmp_path / 'cache'), 'path_train')
    root = tmp_path / 'aac'
    (root / 'id00012' / '21Uxsk56VDQ').mkdir(parents=True)
    (root / 'id00012' / '21Uxsk56VDQ' / '00001.m4a').write_bytes(b'')
    with pytest.raises(FileNotFoundError, match=r"^path_test: .* holds \.m4a files .*-exec sh -c 'ffmpeg "):
        scan_tree(str(root), str(tmp_path / 'cache'), 'path_test')
    assert not (tmp_path / 'cache').exists()


def test_an_unwritable_cache_names_path_cache(tree, tmp_path):
    blocker = tmp_path / 'cache'
    blocker.write_text('a file where the cache folder should be')
    with pytest.raises(OSError, match=r'^path_cache: cannot write the file list cache .*; set path_cache'):
        scan_tree(str(tree), str(blocker), 'path_train')


def test_cache_is_written_atomically(tree, tmp_path, monkeypatch):
    cache = str(tmp_path / 'cache')
    scan_tree(str(tree), cache, 'path_train')
    before = open(cache_path(cache, str(tree)), 'rb').read()
    age(tree)
    write_audio(tree, 'id004/v/1.wav')

    def fail(*args, **kwargs):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(manifest.os, 'replace', fail)
    with pytest.raises(OSError, match='path_cache: .*No space left on device'):
        scan_tree(str(tree), cache, 'path_train')
    assert open(cache_path(cache, str(tree)), 'rb').read() == before  # the old cache stays whole
    assert os.listdir(os.path.join(cache, 'manifests')) == [os.path.basename(cache_path(cache, str(tree)))]


def test_scan_records_its_start_before_listing_and_each_folder_time(tree, monkeypatch):
    """The stored start precedes every listing, so a folder changed during the scan counts as racy."""
    listed_at = []
    real = manifest._list_folder
    monkeypatch.setattr(manifest, '_list_folder', lambda *args: listed_at.append(time.time_ns()) or real(*args))
    _, folders, mtimes, began_ns = manifest._scan(str(tree), 'path_train')
    assert began_ns <= min(listed_at)
    assert sorted(folders) == ['', 'id001', 'id001/vidA', 'id001/vidB', 'id002', 'id002/vidC']
    assert mtimes.dtype == np.int64
    assert mtimes[folders.index('id002/vidC')] == os.stat(tree / 'id002' / 'vidC').st_mtime_ns
