"""Training crops (clean + augmented) and enrollment utterances (full + evenly spaced segments)."""
import os

import numpy as np
import torch

from data.audio import AudioError, random_start, read_audio, read_random_crop, wrap_pad


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
TEST_SUBFOLDERS = ("", "wav", os.path.join("test", "wav"), os.path.join("dev", "wav"))


def resolve_test_files(root, keys, argument="path_test"):
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
            f"{argument}: {len(missing)} of {len(keys)} test files not found under {root} (nor its "
            f"{', '.join(sub + '/' for sub in TEST_SUBFOLDERS if sub)}), the first: {', '.join(missing[:3])}"
        )
    return paths


def _naming_argument(err: AudioError, argument: str) -> AudioError:
    return AudioError(f"{argument}: {err}")


class TrainSet(torch.utils.data.Dataset):
    """Random crops of training files with speaker labels; item i of an epoch is fixed by (seed, epoch, i).

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
        try:
            clean = read_random_crop(self.paths[i], self.num_samples, rng)  # (L,)
        except AudioError as err:
            raise _naming_argument(err, "path_train") from None
        augmented = clean.copy() if self.augment is None else self.augment(clean, rng)
        return torch.from_numpy(clean), torch.from_numpy(augmented), int(self.labels[i])


class EnrollSet(torch.utils.data.Dataset):
    """Test utterances (keys found under root as resolve_test_files finds them), each as the full
    wave and num_seg evenly spaced segments."""

    def __init__(self, root, keys, num_samples, num_seg):
        self.keys = list(keys)
        self.paths = resolve_test_files(root, self.keys)
        self.num_samples = num_samples
        self.num_seg = num_seg

    def __len__(self):
        return len(self.keys)

    def __getitem__(self, i):
        key = self.keys[i]
        try:
            full = read_audio(self.paths[i])  # (N,)
        except AudioError as err:
            raise _naming_argument(err, "path_test") from None
        segments = evenly_spaced_segments(full, self.num_samples, self.num_seg)  # (num_seg, L)
        return torch.from_numpy(full), torch.from_numpy(segments), key
