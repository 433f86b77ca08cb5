"""VoxCeleb training manifests (files and speaker labels) and trial lists."""
import os
from dataclasses import dataclass

import numpy as np


@dataclass
class Manifest:
    paths: list[str]  # absolute paths
    labels: np.ndarray  # int64 (N,), speaker index in sorted speaker order
    speakers: list[str]  # sorted speaker ids


AUDIO_EXTENSIONS = (".wav", ".flac")


def _speaker_files(root, extensions):
    """Relative paths of every file with one of the extensions in the sub-folders of root, sorted;
    files directly in root have no speaker."""
    found = []
    for folder, _, files in os.walk(root):
        if folder != root:
            rel = os.path.relpath(folder, root)
            found.extend(os.path.join(rel, name) for name in files if name.lower().endswith(extensions))
    return sorted(found)


def _no_audio(root, argument):
    """The error for a tree without usable audio; an .m4a tree (VoxCeleb2 as shipped) gets the command
    that converts it."""
    if _speaker_files(root, (".m4a",)):
        return FileNotFoundError(
            f"{argument}: {root} holds .m4a files (VoxCeleb2 as shipped), which cannot be read here; convert "
            f"them to 16 kHz mono wav beside them first, e.g. find {root} -name '*.m4a' -exec sh -c "
            f"'ffmpeg -loglevel error -n -i \"$0\" -ac 1 -ar 16000 \"${{0%.m4a}}.wav\"' {{}} \\;"
        )
    return FileNotFoundError(f"{argument}: no .wav or .flac files under {root}/<speaker>/")


def scan_voxceleb(root: str, argument: str = "path_train") -> Manifest:
    """Every .wav / .flac under root/<speaker>/..., the speaker being the top folder."""
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{argument}: folder not found: {root}")
    rel_paths = _speaker_files(root, AUDIO_EXTENSIONS)
    if not rel_paths:
        raise _no_audio(root, argument)
    speaker_of_file = [p.split(os.sep, 1)[0] for p in rel_paths]
    speakers, labels = np.unique(np.array(speaker_of_file), return_inverse=True)
    return Manifest(
        paths=[os.path.join(root, p) for p in rel_paths],
        labels=labels.astype(np.int64),
        speakers=speakers.tolist(),
    )


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Total utterances / speaker's utterances, float32 (C,); 0 for a speaker with no utterance."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.divide(len(labels), counts, out=np.zeros(num_classes), where=counts > 0)
    return weights.astype(np.float32)


# the official trial-list file names of each VoxCeleb1 test, the cleaned list first
OFFICIAL_TRIAL_FILES = {
    'Vox1-O': ('veri_test2.txt', 'veri_test.txt'),
    'Vox1-E': ('list_test_all2.txt', 'list_test_all.txt'),
    'Vox1-H': ('list_test_hard2.txt', 'list_test_hard.txt'),
}


@dataclass
class Trials:
    labels: np.ndarray  # int64 (M,), 1 = target
    enroll: list[str]  # relative paths as in the file
    test: list[str]

    def utterances(self) -> list[str]:
        """Sorted unique keys of both sides."""
        return sorted(set(self.enroll).union(self.test))

    def indices(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Positions of each trial's enroll and test key in `keys`, int64 (M,) each."""
        position = {key: i for i, key in enumerate(keys)}
        try:
            enroll = np.fromiter(map(position.__getitem__, self.enroll), np.int64, len(self.enroll))
            test = np.fromiter(map(position.__getitem__, self.test), np.int64, len(self.test))
        except KeyError as err:
            raise KeyError(f"trial utterance {err} is not among the given keys") from None
        return enroll, test


def _tokens_per_line(raw: bytes) -> np.ndarray:
    """Number of tokens (runs of bytes above ASCII space) on each newline-separated line, int64 (lines,)."""
    text = np.frombuffer(raw, np.uint8)
    space = np.concatenate(([True], text <= ord(" ")))
    starts = np.flatnonzero(space[:-1] & ~space[1:])
    line_ends = np.append(np.flatnonzero(text == ord("\n")), len(text))
    return np.diff(np.searchsorted(starts, line_ends), prepend=0)


def _malformed(path, raw, line_index, why):
    line = raw.split(b"\n")[line_index].decode(errors="replace").rstrip("\r")
    return ValueError(
        f"path_trials: {path} line {line_index + 1}: {why}: {line!r} (expected 'label path1 path2')"
    )


def _decode_column(tokens: list[bytes]) -> list[str]:
    return b"\n".join(tokens).decode().split("\n")


def read_trials(path: str) -> Trials:
    """Read an official trial list: one `label path1 path2` a line, label 1 = same speaker; blank lines skipped."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path_trials: trial list not found: {path}")
    with open(path, "rb") as f:
        raw = f.read()
    counts = _tokens_per_line(raw)
    bad = np.flatnonzero((counts != 3) & (counts != 0))
    if len(bad):
        raise _malformed(path, raw, bad[0], f"{counts[bad[0]]} fields")
    tokens = raw.split()  # three per trial, in file order
    if len(tokens) != counts.sum():
        raise ValueError(f"path_trials: {path} holds control characters; expected plain text")
    if not tokens:
        raise ValueError(f"path_trials: {path} holds no trials")
    label_text = np.array(tokens[0::3])
    bad = np.flatnonzero((label_text != b"1") & (label_text != b"0"))
    if len(bad):
        raise _malformed(path, raw, np.flatnonzero(counts == 3)[bad[0]], "label must be 0 or 1")
    try:
        enroll, test = _decode_column(tokens[1::3]), _decode_column(tokens[2::3])
    except UnicodeDecodeError as err:
        raise ValueError(f"path_trials: {path} is not UTF-8 text: {err}") from None
    return Trials(labels=(label_text == b"1").astype(np.int64), enroll=enroll, test=test)
