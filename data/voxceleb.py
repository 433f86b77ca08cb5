"""VoxCeleb training manifests (files, speaker labels, lengths) and trial lists."""

import os
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from data.audio import SAMPLE_RATE, resampled_length
from data.manifest import scan_tree
from utils import distributed


@dataclass
class Manifest:
    paths: list[str]  # absolute paths
    labels: np.ndarray  # int64 (N,), speaker index in sorted speaker order
    speakers: list[str]  # sorted speaker ids
    lengths: np.ndarray  # int64 (N,), length in 16 kHz samples
    rates: np.ndarray  # int64 (N,), the file's own sample rate
    channels: np.ndarray  # int64 (N,)
    notes: list[str]  # what the scan left out or will convert, for the log
    root: str = ''  # the scanned folder, absolute
    unreadable: list[str] = field(default_factory=list)  # absolute paths whose header cannot be read


# the official sets a training tree may be: (files, speakers)
OFFICIAL_SETS = {
    'VoxCeleb2 dev': (1_092_009, 5_994),
    'VoxCeleb1 dev': (148_642, 1_211),
    'VoxCeleb1 dev+test': (153_516, 1_251),
    'VoxCeleb1 test': (4_874, 40),
}
VOX1_IDS = (10001, 11251)  # first and last VoxCeleb1 speaker number; VoxCeleb2's are all below 10000
VOX1_TEST_IDS = (10270, 10309)
# a tree with fewer speakers than this share of its set's is a subset on purpose (or a demo): no warning
MIN_OFFICIAL_FRACTION = 0.5
NAMES_SHOWN = 3  # file names a note lists


def identify_voxceleb(speakers: list[str]) -> str | None:
    """'VoxCeleb1' when every id is idNNNNN within id10001-id11251, 'VoxCeleb2' when every one is below
    id10000; None for other names and for both corpora mixed, which no official count describes."""
    if not speakers or not all(re.fullmatch(r'id\d{5}', s) for s in speakers):
        return None
    numbers = np.array([int(s[2:]) for s in speakers])
    if ((numbers >= VOX1_IDS[0]) & (numbers <= VOX1_IDS[1])).all():
        return 'VoxCeleb1'
    if (numbers < 10000).all():
        return 'VoxCeleb2'
    return None


def _official_set(speakers):
    """The official set named by the speaker ids: VoxCeleb1 dev, test or both by which of its speakers
    are there; None when the ids are not VoxCeleb's."""
    corpus = identify_voxceleb(speakers)
    if corpus != 'VoxCeleb1':
        return None if corpus is None else 'VoxCeleb2 dev'
    numbers = np.array([int(s[2:]) for s in speakers])
    test = int(((numbers >= VOX1_TEST_IDS[0]) & (numbers <= VOX1_TEST_IDS[1])).sum())
    return 'VoxCeleb1 test' if test == len(speakers) else 'VoxCeleb1 dev' if test == 0 else 'VoxCeleb1 dev+test'


def _official_count_note(num_files, speakers, argument):
    """A warning when the tree is most of an official set (by its speaker ids) yet its counts differ."""
    name = _official_set(speakers)
    if name is None:
        return None
    files, num_speakers = OFFICIAL_SETS[name]
    if len(speakers) < MIN_OFFICIAL_FRACTION * num_speakers or (num_files, len(speakers)) == (files, num_speakers):
        return None
    return (
        f'warning: {argument} holds {num_files:,} files of {len(speakers):,} speakers where {name} has '
        f'{files:,} files of {num_speakers:,}: a partial download, or files added?'
    )


def _files(count):
    return f'{count:,} file' + ('' if count == 1 else 's')


def _names(rel_paths):
    more = ', ...' if len(rel_paths) > NAMES_SHOWN else ''
    return ', '.join(rel_paths[:NAMES_SHOWN]) + more


def _left_out_note(rel_paths, why, argument):
    """'<argument>: N files <why> are left out: a, b, c, ...', or None when there is none."""
    if not rel_paths:
        return None
    return (
        f'{argument}: {_files(len(rel_paths))} {why} {"is" if len(rel_paths) == 1 else "are"} left out: '
        f'{_names(rel_paths)}'
    )


def _conversion_note(values, unit, what, argument):
    """'<argument>: 12 files at 22050 Hz, 3 at 8000 Hz are <what>', most common value first (then the
    lower); None when `values` is empty."""
    counts = sorted(Counter(values.tolist()).items(), key=lambda item: (-item[1], item[0]))
    if not counts:
        return None
    parts = [f'{_files(counts[0][1])} {unit(counts[0][0])}'] + [f'{n:,} {unit(v)}' for v, n in counts[1:]]
    verb = 'is' if len(values) == 1 else 'are'
    return f'{argument}: {", ".join(parts)} {verb} {what}'


def conversion_notes(rates, channels, argument):
    """The sentences (or None) for files that are read converted: at other rates than 16 kHz, of
    several channels. rates, channels: int arrays (N,), one entry per file."""
    rates, channels = np.asarray(rates), np.asarray(channels)
    return [
        _conversion_note(rates[rates != SAMPLE_RATE], lambda r: f'at {r} Hz', 'resampled to 16 kHz', argument),
        _conversion_note(channels[channels != 1], lambda c: f'of {c} channels', 'mixed down to mono', argument),
    ]


def _notes(tree, keep, min_seconds, argument):
    """The sentences for the log: files left out (unreadable, short), converted (rate, channels) and a
    warning when the counts differ from the official set that the speaker ids name."""
    short = [p for p, kept in zip(tree.rel_paths, keep) if not kept]
    rates, channels = tree.rates[keep], tree.channels[keep]
    all_files = tree.rel_paths + tree.unreadable
    notes = [
        _left_out_note(tree.unreadable, 'whose header cannot be read', argument),
        _left_out_note(short, f'shorter than {min_seconds} s', argument),
        *conversion_notes(rates, channels, argument),
        _official_count_note(len(all_files), sorted({p.split(os.sep, 1)[0] for p in all_files}), argument),
    ]
    return [note for note in notes if note]


def scan_voxceleb(
    root: str, argument: str = 'path_train', cache_dir: str | None = None, min_seconds: float = 0.5
) -> Manifest:
    """Every .wav / .flac under root/<speaker>/..., the speaker being the top folder, with its length in
    16 kHz samples; files whose header cannot be read or shorter than min_seconds are left out. The scan
    is cached under cache_dir (see data.manifest); the notes say what was left out or will be converted."""
    tree = scan_tree(root, cache_dir, argument)
    lengths = resampled_length(tree.frames, np.maximum(tree.rates, 1))  # (N,) int64, 16 kHz samples
    keep = lengths >= min_seconds * SAMPLE_RATE  # (N,) bool
    notes = _notes(tree, keep, min_seconds, argument)
    if not keep.any():
        raise FileNotFoundError(f'{argument}: no usable audio under {tree.root}; ' + '; '.join(notes))
    rel_paths = [p for p, kept in zip(tree.rel_paths, keep) if kept]
    speakers, labels = np.unique(np.array([p.split(os.sep, 1)[0] for p in rel_paths]), return_inverse=True)
    return Manifest(
        paths=[os.path.join(tree.root, p) for p in rel_paths],
        labels=labels.astype(np.int64),
        speakers=speakers.tolist(),
        lengths=lengths[keep],
        rates=tree.rates[keep],
        channels=tree.channels[keep],
        notes=notes,
        root=tree.root,
        unreadable=[os.path.join(tree.root, p) for p in tree.unreadable],
    )


def random_subset(manifest: Manifest, count: int, seed: int) -> Manifest:
    """count files drawn without replacement by the seed (kept in the manifest's order), their
    speakers labelled again in sorted order."""
    keep = np.sort(np.random.default_rng([seed, 3]).choice(len(manifest.paths), count, replace=False))
    present, labels = np.unique(manifest.labels[keep], return_inverse=True)
    return Manifest(
        paths=[manifest.paths[i] for i in keep],
        labels=labels.astype(np.int64),
        speakers=[manifest.speakers[i] for i in present],
        lengths=manifest.lengths[keep],
        rates=manifest.rates[keep],
        channels=manifest.channels[keep],
        notes=manifest.notes,
        root=manifest.root,
        unreadable=manifest.unreadable,
    )


def training_manifest(args, logger):
    """The training files and speakers, scanned once into path_cache (rank 0 first, the others then
    read its cache), with what the scan found said in the log: files left out, resampled or
    mixed down, counts unlike the official ones."""

    def scan():
        return scan_voxceleb(args['path_train'], 'path_train', args['path_cache'], args['min_train_seconds'])

    manifest = scan() if distributed.is_main() else None
    distributed.barrier()
    manifest = manifest or scan()
    for note in manifest.notes:
        logger.log_text(note)
    if 0 < args['max_train_files'] < len(manifest.paths):
        manifest = random_subset(manifest, args['max_train_files'], args['seed'])
        logger.log_text(
            f'max_train_files={args["max_train_files"]}: training on a random subset, '
            f'{len(manifest.paths)} files of {len(manifest.speakers)} speakers'
        )
    if len(manifest.unreadable) > args['max_bad_files']:
        raise ValueError(
            f'path_train: {len(manifest.unreadable)} training files cannot be read (more than '
            f'max_bad_files={args["max_bad_files"]}), the first: {", ".join(manifest.unreadable[:3])}; '
            f'repair or remove them, or raise max_bad_files'
        )
    return manifest


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
    'Val': (),  # a validation list has no official name: trials_val names it
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
            raise KeyError(f'trial utterance {err} is not among the given keys') from None
        return enroll, test


def _tokens_per_line(raw: bytes) -> np.ndarray:
    """Number of tokens (runs of bytes above ASCII space) on each newline-separated line, int64 (lines,)."""
    text = np.frombuffer(raw, np.uint8)
    space = np.concatenate(([True], text <= ord(' ')))
    starts = np.flatnonzero(space[:-1] & ~space[1:])
    line_ends = np.append(np.flatnonzero(text == ord('\n')), len(text))
    return np.diff(np.searchsorted(starts, line_ends), prepend=0)


def _malformed(path, raw, line_index, why):
    line = raw.split(b'\n')[line_index].decode(errors='replace').rstrip('\r')
    return ValueError(f"path_trials: {path} line {line_index + 1}: {why}: {line!r} (expected 'label path1 path2')")


def _decode_column(tokens: list[bytes]) -> list[str]:
    return b'\n'.join(tokens).decode().split('\n')


def read_trials(path: str) -> Trials:
    """Read an official trial list: one `label path1 path2` a line, label 1 = same speaker; blank lines skipped."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'path_trials: trial list not found: {path}')
    with open(path, 'rb') as f:
        raw = f.read()
    counts = _tokens_per_line(raw)
    bad = np.flatnonzero((counts != 3) & (counts != 0))
    if len(bad):
        raise _malformed(path, raw, bad[0], f'{counts[bad[0]]} fields')
    tokens = raw.split()  # three per trial, in file order
    if len(tokens) != counts.sum():
        raise ValueError(f'path_trials: {path} holds control characters; expected plain text')
    if not tokens:
        raise ValueError(f'path_trials: {path} holds no trials')
    label_text = np.array(tokens[0::3])
    bad = np.flatnonzero((label_text != b'1') & (label_text != b'0'))
    if len(bad):
        raise _malformed(path, raw, np.flatnonzero(counts == 3)[bad[0]], 'label must be 0 or 1')
    try:
        enroll, test = _decode_column(tokens[1::3]), _decode_column(tokens[2::3])
    except UnicodeDecodeError as err:
        raise ValueError(f'path_trials: {path} is not UTF-8 text: {err}') from None
    return Trials(labels=(label_text == b'1').astype(np.int64), enroll=enroll, test=test)
