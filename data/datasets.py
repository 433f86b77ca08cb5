"""Training crops (clean + augmented) and enrollment utterances (full + evenly spaced segments)."""

import os

import numpy as np
import torch

from data.audio import AudioError, audio_length, random_start, read_audio, read_random_crop, wrap_pad


def crop(wave: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A random num_samples crop; a shorter wave is wrap-padded instead."""
    if len(wave) < num_samples:
        return wrap_pad(wave, num_samples)
    start = random_start(len(wave), num_samples, rng)
    return wave[start : start + num_samples]


def evenly_spaced_segments(wave: np.ndarray, num_samples: int, num_seg: int) -> np.ndarray:
    """num_seg crops from the start to the end of the wave, evenly spaced, (num_seg, num_samples)."""
    if len(wave) < num_samples:
        wave = wrap_pad(wave, num_samples)
    starts = np.linspace(0, len(wave) - num_samples, num_seg).round().astype(np.int64)
    return np.stack([wave[s : s + num_samples] for s in starts])


# where VoxCeleb1 keeps its wavs once unpacked: the root itself, or wav/ (vox1_test_wav, vox1_dev_wav),
# or test/wav/ and dev/wav/ when both are unpacked side by side
TEST_SUBFOLDERS = ('', 'wav', os.path.join('test', 'wav'), os.path.join('dev', 'wav'))


def resolve_test_files(root, keys, argument='path_test'):
    """The file of each key: root/key or the first conventional subfolder of root that holds it.
    Fails when any key is found nowhere, naming the argument, the count and the first few."""
    roots = [os.path.join(root, sub) for sub in TEST_SUBFOLDERS if os.path.isdir(os.path.join(root, sub))]
    paths, missing = [], []
    for key in keys:
        path = next((os.path.join(r, key) for r in roots if os.path.isfile(os.path.join(r, key))), None)
        paths.append(path)
        if path is None:
            missing.append(key)
    if missing:
        raise FileNotFoundError(
            f'{argument}: {len(missing)} of {len(keys)} test files not found under {root} (nor its '
            f'{", ".join(sub + "/" for sub in TEST_SUBFOLDERS if sub)}), the first: {", ".join(missing[:3])}'
        )
    return paths


def _naming_argument(err: AudioError, argument: str) -> AudioError:
    return AudioError(f'{argument}: {err}')


MAX_BAD_IN_A_ROW = 20  # so many unreadable files drawn in a row: the tree, not a file, is broken


class TrainSet(torch.utils.data.Dataset):
    """Random crops of training files with speaker labels; item i of an epoch is fixed by (seed, epoch, i).

    Item i is (clean (L,), augmented (L,), label, bad). A file that cannot be read (unreadable, empty)
    is skipped: the item takes a file drawn from its own random stream instead, with that file's label,
    and `bad` names the skipped paths, '\\n'-joined ('' when none). A string, so that the default collate
    hands the training loop one per item (see bad_paths) to count across workers and ranks.

    The epoch reaches DataLoader workers only when they are started anew each epoch
    (persistent_workers=False, the default), as set_epoch changes this object in the main process.
    """

    def __init__(self, paths, labels, num_samples, augment=None, seed=1):
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_samples = num_samples
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, self.epoch, i])
        clean, used, bad = self._readable_crop(i, rng)  # (L,)
        augmented = clean.copy() if self.augment is None else self.augment(clean, rng)
        return torch.from_numpy(clean), torch.from_numpy(augmented), int(self.labels[used]), '\n'.join(bad)

    def _readable_crop(self, i, rng):
        """A crop of file i or, when that cannot be read, of the first readable file drawn from rng in its
        place; with the index of the file used and the bad paths met (each once, in the order met).
        Replacements are drawn only after a failure, so a readable file i takes the same draws as ever."""
        bad = []
        for _ in range(MAX_BAD_IN_A_ROW):
            try:
                return read_random_crop(self.paths[i], self.num_samples, rng), i, bad
            except AudioError as err:
                last = err
                if self.paths[i] not in bad:
                    bad.append(self.paths[i])
                i = int(rng.integers(len(self.paths)))
        raise AudioError(
            f'path_train: {MAX_BAD_IN_A_ROW} files drawn in a row could not be read '
            f'({len(bad)} different ones), does the tree hold readable audio? The last: {last}'
        )

    @staticmethod
    def bad_paths(batch_bad) -> list[str]:
        """The skipped paths of a batch, from its 4th element (one '\\n'-joined string per item)."""
        return [path for joined in batch_bad for path in joined.split('\n') if path]


class EnrollSet(torch.utils.data.Dataset):
    """Test utterances (keys found under root as resolve_test_files finds them), each as the full
    wave and num_seg evenly spaced segments; item i is (full (N,), segments (num_seg, L), i)."""

    def __init__(self, root, keys, num_samples, num_seg):
        self.keys = list(keys)
        self.paths = resolve_test_files(root, self.keys)
        self.num_samples = num_samples
        self.num_seg = num_seg

    def __len__(self):
        return len(self.keys)

    def lengths(self) -> np.ndarray:
        """Every utterance's length in 16 kHz samples, from the headers, int64 (N,)."""
        try:
            return np.array([audio_length(path) for path in self.paths], dtype=np.int64)
        except AudioError as err:
            raise _naming_argument(err, 'path_test') from None

    def __getitem__(self, i):
        try:
            full = read_audio(self.paths[i])  # (N,)
        except AudioError as err:
            raise _naming_argument(err, 'path_test') from None
        segments = evenly_spaced_segments(full, self.num_samples, self.num_seg)  # (num_seg, L)
        return torch.from_numpy(full), torch.from_numpy(segments), i


def collate_enrollment(items):
    """A batch of EnrollSet items -> (full waves zero-padded to the longest (B, N), their lengths (B,),
    every segment (B * num_seg, L), item indices (B,))."""
    lengths = torch.tensor([len(full) for full, _, _ in items])
    full = torch.zeros(len(items), int(lengths.max()))
    for row, (wave, _, _) in enumerate(items):
        full[row, : len(wave)] = wave
    segments = torch.cat([segs for _, segs, _ in items])
    return full, lengths, segments, torch.tensor([i for _, _, i in items])
