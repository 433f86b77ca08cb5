import os

import numpy as np
import pytest
import soundfile as sf
import torch

from data import datasets
from data.audio import AudioError, read_random_crop
from data.datasets import EnrollSet, TrainSet, crop, evenly_spaced_segments, resolve_test_files

SR = 16000


def write_wav(path, wave, rate=SR):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, rate, subtype='FLOAT')
    return str(path)


def test_crop_is_the_slice_at_the_drawn_start():
    wave = np.arange(1000, dtype=np.float32)
    start = np.random.default_rng(7).integers(0, 1000 - 300 + 1)
    np.testing.assert_array_equal(crop(wave, 300, np.random.default_rng(7)), wave[start : start + 300])
    np.testing.assert_array_equal(crop(wave, 1000, np.random.default_rng(7)), wave)


def test_crop_wrap_pads_short_waves():
    out = crop(np.array([1.0, 2.0, 3.0], np.float32), 7, np.random.default_rng(0))
    np.testing.assert_array_equal(out, [1, 2, 3, 1, 2, 3, 1])


def test_segments_evenly_spaced_from_start_to_end():
    wave = np.arange(1000, dtype=np.float32)
    segments = evenly_spaced_segments(wave, 300, 5)
    assert segments.shape == (5, 300)
    np.testing.assert_array_equal(segments[:, 0], [0, 175, 350, 525, 700])
    assert segments[-1, -1] == 999
    np.testing.assert_array_equal(segments[2], np.arange(350, 650))


def test_segments_of_short_wave_are_the_wrap_padded_wave():
    wave = np.arange(100, dtype=np.float32)
    segments = evenly_spaced_segments(wave, 250, 3)
    expected = np.concatenate([wave, wave, wave[:50]])
    np.testing.assert_array_equal(segments, np.stack([expected] * 3))


@pytest.fixture
def train_files(tmp_path):
    rng = np.random.default_rng(0)
    lengths = [5000, 8000, 700]  # the last is shorter than a crop
    paths = [
        write_wav(tmp_path / f'id{i}/v/1.wav', rng.standard_normal(n).astype(np.float32)) for i, n in enumerate(lengths)
    ]
    return paths, np.array([2, 0, 1])


def test_trainset_item_fixed_by_seed_epoch_index(train_files):
    paths, labels = train_files
    a, b = TrainSet(paths, labels, 1000, seed=3), TrainSet(paths, labels, 1000, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    for i in (2, 0, 1):  # order does not matter
        clean_a, aug_a, label_a, bad_a = a[i]
        clean_b, aug_b, label_b, bad_b = b[i]
        assert torch.equal(clean_a, clean_b) and torch.equal(aug_a, aug_b) and label_a == label_b == labels[i]
        assert bad_a == bad_b == ''
        assert clean_a.shape == (1000,) and clean_a.dtype == torch.float32
    expected = read_random_crop(paths[1], 1000, np.random.default_rng([3, 2, 1]))
    np.testing.assert_array_equal(a[1][0].numpy(), expected)
    b.set_epoch(3)
    assert not torch.equal(a[0][0], b[0][0])
    assert not torch.equal(a[0][0], TrainSet(paths, labels, 1000, seed=4).__getitem__(0)[0])


def test_trainset_without_augment_gives_a_copy(train_files):
    paths, labels = train_files
    clean, augmented, _, _ = TrainSet(paths, labels, 1000)[0]
    assert torch.equal(clean, augmented) and clean.data_ptr() != augmented.data_ptr()


def test_trainset_augment_continues_the_item_rng(train_files):
    paths, labels = train_files
    dataset = TrainSet(paths, labels, 1000, augment=lambda w, rng: w + rng.standard_normal(len(w)).astype(np.float32))
    dataset.set_epoch(5)
    rng = np.random.default_rng([1, 5, 0])
    clean = read_random_crop(paths[0], 1000, rng)
    clean_t, aug_t, _, _ = dataset[0]
    np.testing.assert_array_equal(clean_t.numpy(), clean)
    np.testing.assert_array_equal(aug_t.numpy(), clean + rng.standard_normal(1000).astype(np.float32))


def test_trainset_short_file_wrap_padded(train_files):
    paths, labels = train_files
    clean = TrainSet(paths, labels, 1500)[2][0].numpy()
    whole = sf.read(paths[2], dtype='float32')[0]
    np.testing.assert_array_equal(clean, np.concatenate([whole, whole, whole[:100]]))


def test_trainset_reads_only_the_crop(train_files, frames_read):
    paths, labels = train_files
    requested = frames_read
    TrainSet(paths, labels, 1000)[1]
    assert requested == [1000]


def test_trainset_same_items_with_workers(train_files):
    paths, labels = train_files
    dataset = TrainSet(paths, labels, 1000)
    dataset.set_epoch(4)
    direct = torch.stack([dataset[i][0] for i in range(3)])
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=2)
    assert torch.equal(torch.cat([clean for clean, _, _, _ in loader]), direct)


@pytest.fixture
def tree_with_bad_files(tmp_path):
    """Three good files, each known by its values (file k holds k + [0, 0.5), rising), among an empty wav
    and one of garbage bytes; paths, labels and {good path: its wave}."""
    good = {}
    for k, n in enumerate([5000, 8000, 700]):
        good[write_wav(tmp_path / f'id{k}/v/1.wav', (k + 0.5 * np.arange(n) / n).astype(np.float32))] = None
    good = {path: sf.read(path, dtype='float32')[0] for path in good}
    empty = write_wav(tmp_path / 'id7/v/empty.wav', np.zeros(0, np.float32))
    garbage = tmp_path / 'id8/v/garbage.wav'
    garbage.parent.mkdir(parents=True)
    garbage.write_bytes(np.random.default_rng(0).bytes(3000))
    first, second, third = good
    return [first, empty, second, str(garbage), third], np.array([10, 11, 12, 13, 14]), good


def test_trainset_skips_bad_files_and_names_them(tree_with_bad_files, monkeypatch):
    paths, labels, good = tree_with_bad_files
    attempts = []  # (path, read) of every file an item tries

    def recording_crop(path, num_samples, rng):
        try:
            wave = read_random_crop(path, num_samples, rng)
        except AudioError:
            attempts.append((path, False))
            raise
        attempts.append((path, True))
        return wave

    monkeypatch.setattr(datasets, 'read_random_crop', recording_crop)
    dataset = TrainSet(paths, labels, 1000, seed=5)
    for epoch in range(6):
        dataset.set_epoch(epoch)
        for i in range(len(paths)):
            attempts.clear()
            clean, augmented, label, bad = dataset[i]
            used = attempts[-1][0]
            assert attempts[0][0] == paths[i] and attempts[-1][1] and used in good
            assert bad == '\n'.join(dict.fromkeys(path for path, read in attempts if not read))  # each once
            assert (bad == '') == (paths[i] in good)
            assert label == labels[paths.index(used)]
            wave = good[used]  # the audio is that file's: its values, a wrap-padded run from a drawn start
            start = int(np.searchsorted(wave, clean[0].item()))
            np.testing.assert_array_equal(clean.numpy(), np.concatenate([wave, wave])[start : start + 1000])
            assert torch.equal(clean, augmented)
            if paths[i] in good:  # a good item is today's: the same draws from its own rng
                expected = read_random_crop(paths[i], 1000, np.random.default_rng([5, epoch, i]))
                np.testing.assert_array_equal(clean.numpy(), expected)


def noisy(wave, rng):
    return wave + rng.standard_normal(len(wave)).astype(np.float32)


def test_trainset_replacement_fixed_by_seed_epoch_index_and_collated(tree_with_bad_files):
    paths, labels, _ = tree_with_bad_files
    a, b = TrainSet(paths, labels, 1000, noisy, seed=2), TrainSet(paths, labels, 1000, noisy, seed=2)
    a.set_epoch(3)
    b.set_epoch(3)
    for i in (3, 1, 3):
        item_a, item_b = a[i], b[i]
        assert torch.equal(item_a[0], item_b[0]) and torch.equal(item_a[1], item_b[1]) and item_a[2:] == item_b[2:]
        assert item_a[3].split('\n')[0] == paths[i]
    direct = [a[i] for i in range(len(paths))]
    batches = list(torch.utils.data.DataLoader(a, batch_size=2, num_workers=2))  # default collate
    assert torch.equal(torch.cat([batch[1] for batch in batches]), torch.stack([item[1] for item in direct]))
    assert torch.cat([batch[2] for batch in batches]).tolist() == [item[2] for item in direct]
    assert [list(batch[3]) for batch in batches] == [[item[3] for item in direct[j : j + 2]] for j in (0, 2, 4)]
    met = [path for batch in batches for path in TrainSet.bad_paths(batch[3])]
    assert met == TrainSet.bad_paths(item[3] for item in direct) and {paths[1], paths[3]} <= set(met)


def test_trainset_of_only_bad_files_names_path_train(tmp_path):
    empty = write_wav(tmp_path / 'id0/v/empty.wav', np.zeros(0, np.float32))
    garbage = tmp_path / 'id1/v/garbage.wav'
    garbage.parent.mkdir(parents=True)
    garbage.write_bytes(b'not audio' * 100)
    with pytest.raises(
        AudioError,
        match=r'^path_train: 20 files drawn in a row could not be read \(2 different '
        r'ones\).*/id\d/v/(empty|garbage)\.wav',
    ):
        TrainSet([empty, str(garbage)], [0, 1], 1000)[0]


def test_enrollset_full_wave_segments_and_key(tmp_path):
    wave = np.arange(5000, dtype=np.float32) / 5000
    write_wav(tmp_path / 'id1/v/00001.wav', wave)
    full, segments, index = EnrollSet(str(tmp_path), ['id1/v/00001.wav'], 2000, 4)[0]
    assert index == 0
    np.testing.assert_array_equal(full.numpy(), wave)
    assert segments.shape == (4, 2000)
    np.testing.assert_array_equal(segments.numpy(), evenly_spaced_segments(wave, 2000, 4))


def test_enrollset_missing_file_names_path_test(tmp_path):
    write_wav(tmp_path / 'id1/v/00001.wav', np.zeros(100, np.float32))
    with pytest.raises(
        FileNotFoundError,
        match=r'path_test: 1 of 2 test files not found under .* \(nor its '
        r'wav/, test/wav/, dev/wav/\), the first: id1/v/00002\.wav',
    ):
        EnrollSet(str(tmp_path), ['id1/v/00001.wav', 'id1/v/00002.wav'], 50, 2)


def test_test_files_are_found_in_voxcelebs_own_subfolders(tmp_path):
    for rel in (
        'wav/id1/v/00001.wav',
        'test/wav/id2/v/00001.wav',
        'dev/wav/id3/v/00001.wav',
        'id4/v/00001.wav',
        'dev/wav/id1/v/00001.wav',
    ):
        write_wav(tmp_path / rel, np.zeros(100, np.float32))
    keys = ['id1/v/00001.wav', 'id2/v/00001.wav', 'id3/v/00001.wav', 'id4/v/00001.wav']
    paths = resolve_test_files(str(tmp_path), keys)
    assert [os.path.relpath(path, tmp_path) for path in paths] == [  # the first folder that holds a key
        'wav/id1/v/00001.wav',
        'test/wav/id2/v/00001.wav',
        'dev/wav/id3/v/00001.wav',
        'id4/v/00001.wav',
    ]
    with pytest.raises(FileNotFoundError, match=r'3 of 5 test files not found .* the first: a\.wav, b\.wav, c\.wav$'):
        resolve_test_files(str(tmp_path), keys[:2] + ['a.wav', 'b.wav', 'c.wav'])


def test_enrollset_empty_file_names_path_test(tmp_path):
    write_wav(tmp_path / 'id1/v/00001.wav', np.zeros(0, np.float32))
    with pytest.raises(AudioError, match=r'path_test: .*00001\.wav holds no samples'):
        EnrollSet(str(tmp_path), ['id1/v/00001.wav'], 50, 2)[0]
