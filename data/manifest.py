"""Audio trees: every .wav / .flac under root/<speaker>/... with its header, cached on disk per root.

A scan lists the tree and reads each file's header (frames, sample rate, channels; nothing is decoded).
With a cache_dir the result is kept in cache_dir/manifests/<hash of root>.npz together with the
modification time of every folder of the tree. Adding, removing or renaming a file or folder changes
its parent folder's mtime, so a later scan loads the cache only while every folder's mtime still
matches, and scans again otherwise. A file rewritten in place under the same name is not noticed:
delete the cache file (cache_path) after editing audio in place.
"""

import hashlib
import os
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from data.audio import SAMPLE_RATE

AUDIO_EXTENSIONS = ('.wav', '.flac')
CACHE_VERSION = 1  # bump when the cache's contents change, so old files are rescanned
# soundfile opens one file at a time (a lock around sf_open), so a pool of header reads runs no faster
# than one thread, and slower (2 cores, 21,600 cached files: 0.41 s in one thread, 1.0 s in 2 to 32).
# What parallelises is the disk: a pool reads the first page of the files a few chunks ahead while one
# thread parses the headers. 148,642 files, 2 cores, a scan with their pages evicted from the page
# cache: 16.1 s without prefetch, 11.0 s with 2 threads, 10.1 s with 8, 10.6 s with 16; with every
# page cached it costs 3.5 s -> 4.8 s, a small price next to a disk's latency, once per tree.
PREFETCH_THREADS = 8
PREFETCH_BYTES = 4096  # a header of wav or flac (libsndfile's first reads) lies in the first page
CHUNK = 256  # files per prefetch task
LOOKAHEAD = 8  # chunks prefetched ahead of the header reads
# A folder modified within this window of its scan (file timestamps are coarse: a jiffy, up to 2 s on
# FAT) may change again without its mtime changing, so its listing is compared again on a cache load.
RACY_NS = 2_000_000_000


@dataclass
class AudioTree:
    root: str  # absolute
    rel_paths: list[str]  # sorted, relative to root; only files whose header could be read
    frames: np.ndarray  # int64 (N,), at the file's own rate
    rates: np.ndarray  # int64 (N,), Hz
    channels: np.ndarray  # int64 (N,)
    unreadable: list[str]  # sorted relative paths whose header soundfile cannot read


def _list_folder(folder, extensions):
    """Names of the sub-folders to descend into (links to folders are not followed, as in os.walk) and of
    the files with one of the extensions."""
    subfolders, files = [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir():
                if not entry.is_symlink():
                    subfolders.append(entry.name)
            elif entry.name.lower().endswith(extensions):
                files.append(entry.name)
    return subfolders, files


def _walk(root, extensions):
    """Relative paths of the files with one of the extensions in the sub-folders of root (files directly
    in root have no speaker), sorted; every folder of the tree (root as '') and its st_mtime_ns, int64,
    each taken before the folder is listed so that a later change shows. Unlistable folders are skipped."""
    files, folders, mtimes = [], [], []
    pending = ['']
    while pending:
        rel = pending.pop()
        folder = os.path.join(root, rel)
        try:
            mtime = os.stat(folder).st_mtime_ns
            subfolders, names = _list_folder(folder, extensions)
        except OSError:
            continue
        folders.append(rel)
        mtimes.append(mtime)
        if rel:
            files.extend(os.path.join(rel, name) for name in names)
        pending.extend(os.path.join(rel, name) for name in subfolders)
    return sorted(files), folders, np.array(mtimes, dtype=np.int64)


def _no_audio(root, argument):
    """The error for a tree without usable audio; an .m4a tree (VoxCeleb2 as shipped) gets the command
    that converts it."""
    if _walk(root, ('.m4a',))[0]:
        return FileNotFoundError(
            f'{argument}: {root} holds .m4a files (VoxCeleb2 as shipped), which cannot be read here; convert '
            f"them to 16 kHz mono wav beside them first, e.g. find {root} -name '*.m4a' -exec sh -c "
            f'\'ffmpeg -loglevel error -n -i "$0" -ac 1 -ar {SAMPLE_RATE} "${{0%.m4a}}.wav"\' {{}} \\;'
        )
    return FileNotFoundError(f'{argument}: no .wav or .flac files under {root}/<speaker>/')


def _read_header(path):
    """(frames, sample rate, channels) of an audio file, from its header only."""
    with sf.SoundFile(path) as f:
        return f.frames, f.samplerate, f.channels


def _prefetch(paths):
    """Read the first page of each file into the page cache, so that its header is parsed from memory."""
    for path in paths:
        try:
            with open(path, 'rb', buffering=0) as f:
                f.read(PREFETCH_BYTES)
        except OSError:
            pass  # the header read reports this file as unreadable


def _read_headers(paths):
    """Frames, rate and channels of every file, int64 (N, 3), and whether its header could be read,
    bool (N,). Headers are parsed in this thread while a pool prefetches the files LOOKAHEAD chunks ahead."""
    headers = np.zeros((len(paths), 3), dtype=np.int64)
    readable = np.ones(len(paths), dtype=bool)
    starts = range(0, len(paths), CHUNK)
    with ThreadPoolExecutor(PREFETCH_THREADS) as pool:
        prefetched = [pool.submit(_prefetch, paths[s : s + CHUNK]) for s in starts[:LOOKAHEAD]]
        for k, start in enumerate(starts):
            prefetched[k].result()
            if k + LOOKAHEAD < len(starts):
                ahead = starts[k + LOOKAHEAD]
                prefetched.append(pool.submit(_prefetch, paths[ahead : ahead + CHUNK]))
            for i in range(start, min(start + CHUNK, len(paths))):
                try:
                    headers[i] = _read_header(paths[i])
                except (sf.SoundFileError, RuntimeError, OSError):
                    readable[i] = False
    return headers, readable


def cache_path(cache_dir: str, root: str) -> str:
    """The cache file of the tree at root (absolute): cache_dir/manifests/<sha1 of root>.npz."""
    digest = hashlib.sha1(root.encode(errors='surrogateescape')).hexdigest()[:16]
    return os.path.join(cache_dir, 'manifests', f'{digest}.npz')


def _joined(names):
    """Names as one NUL-separated byte string, uint8 (bytes,): loads at once, and NUL is in no path."""
    return np.frombuffer('\0'.join(names).encode(errors='surrogateescape'), dtype=np.uint8)


def _split(joined):
    text = joined.tobytes().decode(errors='surrogateescape')
    return text.split('\0') if text else []


def _save(path, tree, folders, mtimes, began_ns):
    """Write the cache file atomically (a temporary file in the same folder, then renamed into place),
    so that a killed run or a concurrent one never leaves a half-written cache."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, scratch = tempfile.mkstemp(suffix='.tmp', dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, 'wb') as f:
                np.savez(
                    f,
                    version=np.int64(CACHE_VERSION),
                    root=_joined([tree.root]),
                    paths=_joined(tree.rel_paths),
                    frames=tree.frames,
                    rates=tree.rates,
                    channels=tree.channels,
                    unreadable=_joined(tree.unreadable),
                    folders=_joined(folders),
                    mtimes=mtimes,
                    began_ns=np.int64(began_ns),
                )
            os.replace(scratch, path)
        finally:
            if os.path.exists(scratch):
                os.remove(scratch)
    except OSError as err:
        raise OSError(
            f'path_cache: cannot write the file list cache {path}: {err.strerror or err}; '
            f'set path_cache to a writable folder'
        ) from None


def _listings_match(root, racy, folders, files):
    """Whether each folder in `racy` still holds the sub-folders and audio files that the cache lists."""
    cached = {rel: (set(), set()) for rel in racy}  # folder: (sub-folder names, file names)
    for rel in folders:
        if rel and os.path.dirname(rel) in cached:
            cached[os.path.dirname(rel)][0].add(os.path.basename(rel))
    for rel in files:
        if os.path.dirname(rel) in cached:
            cached[os.path.dirname(rel)][1].add(os.path.basename(rel))
    for rel, (subfolders, names) in cached.items():
        try:
            live_subfolders, live_names = _list_folder(os.path.join(root, rel), AUDIO_EXTENSIONS)
        except OSError:
            return False
        if set(live_subfolders) != subfolders or (rel and set(live_names) != names):
            return False
    return True


def _unchanged(root, folders, mtimes, began_ns, files):
    """Whether every folder of the cached tree (root included) keeps its mtime, and the folders modified
    around the scan keep their listing."""
    for rel, mtime in zip(folders, mtimes.tolist()):
        try:
            if os.stat(os.path.join(root, rel)).st_mtime_ns != mtime:
                return False
        except OSError:
            return False
    racy = [folders[i] for i in np.flatnonzero(mtimes >= began_ns - RACY_NS)]
    return not racy or _listings_match(root, racy, folders, files)


def _load(path, root):
    """The cached tree of root, or None when there is no cache, it is damaged or stale, or a folder changed."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if data['version'] != CACHE_VERSION or _split(data['root']) != [root]:
                return None
            tree = AudioTree(
                root=root,
                rel_paths=_split(data['paths']),
                frames=data['frames'],
                rates=data['rates'],
                channels=data['channels'],
                unreadable=_split(data['unreadable']),
            )
            folders, mtimes, began_ns = _split(data['folders']), data['mtimes'], int(data['began_ns'])
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
        return None  # a missing or damaged cache file only means a new scan
    arrays = (tree.frames, tree.rates, tree.channels)
    if any(a.dtype != np.int64 or a.shape != (len(tree.rel_paths),) for a in arrays) or len(mtimes) != len(folders):
        return None
    if not _unchanged(root, folders, mtimes, began_ns, tree.rel_paths + tree.unreadable):
        return None
    return tree


def _scan(root, argument):
    """List the tree and read every header; also the folders and their mtimes, and when the scan began."""
    began_ns = time.time_ns()
    rel_paths, folders, mtimes = _walk(root, AUDIO_EXTENSIONS)
    if not rel_paths:
        raise _no_audio(root, argument)
    headers, readable = _read_headers([os.path.join(root, p) for p in rel_paths])
    tree = AudioTree(
        root=root,
        rel_paths=[p for p, ok in zip(rel_paths, readable) if ok],
        frames=headers[readable, 0].copy(),
        rates=headers[readable, 1].copy(),
        channels=headers[readable, 2].copy(),
        unreadable=[p for p, ok in zip(rel_paths, readable) if not ok],
    )
    return tree, folders, mtimes, began_ns


def scan_tree(root: str, cache_dir: str | None, argument: str) -> AudioTree:
    """Every .wav / .flac under root/<speaker>/... with its header; from cache_dir's cache while no folder
    of the tree changed, else scanned and cached anew (cache_dir=None: always scanned, nothing written).
    `argument` is the setting that names root, for the errors."""
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f'{argument}: folder not found: {root}')
    path = None if cache_dir is None else cache_path(cache_dir, root)
    tree = None if path is None else _load(path, root)
    if tree is None:
        tree, folders, mtimes, began_ns = _scan(root, argument)
        if path is not None:
            _save(path, tree, folders, mtimes, began_ns)
    return tree
