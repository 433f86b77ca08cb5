"""Scanning a VoxCeleb1-sized training tree: the first scan (every header read) and the cached load.

    python benchmarks/bench_manifest.py

Writes 148,642 tiny 16 kHz mono wavs (VoxCeleb1 dev+test's file count) of 1,251 speakers, 18 video
folders each, into a temporary folder (about 0.6 GB of 4 KiB blocks), then times scan_voxceleb with a
cache (min_seconds=0, as the files are tiny): the first scan, and the load from the cache (median
of 3). A tree written moments before its scan has folders modified within the timestamp window
(data.manifest.RACY_NS), whose listings a cached load compares again; a tree unpacked long before has
none, so the tree is then dated an hour back, scanned anew and the cached load timed again. Both
cached loads must read no header. The last line is `bench_manifest: cached_load_s=X`, the old tree's
cached load.
"""

import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import manifest  # noqa: E402
from data.audio import SAMPLE_RATE  # noqa: E402
from data.voxceleb import scan_voxceleb  # noqa: E402
from machine import cpu_model  # noqa: E402

NUM_FILES = 148_642
NUM_SPEAKERS = 1_251
VIDEOS_PER_SPEAKER = 18
SAMPLES = 400
REPEATS = 3


def tiny_wav() -> bytes:
    """The bytes of one 400-sample 16 kHz mono 16-bit wav, written once and copied to every path."""
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(SAMPLES, np.float32), SAMPLE_RATE, format='WAV', subtype='PCM_16')
    return buffer.getvalue()


def write_tree(root):
    """NUM_FILES files spread evenly over NUM_SPEAKERS x VIDEOS_PER_SPEAKER video folders."""
    data = tiny_wav()
    videos = [
        os.path.join(root, f'id{10001 + s:05d}', f'video{v:02d}xxxxx')
        for s in range(NUM_SPEAKERS)
        for v in range(VIDEOS_PER_SPEAKER)
    ]
    per_video = np.diff(np.linspace(0, NUM_FILES, len(videos) + 1).round().astype(np.int64))  # (videos,)
    for folder, count in zip(videos, per_video.tolist()):
        os.makedirs(folder)
        for u in range(count):
            with open(os.path.join(folder, f'{u + 1:05d}.wav'), 'wb') as f:
                f.write(data)
    return len(videos)


def date_back(root, seconds):
    for folder, _, _ in os.walk(root):
        then = time.time_ns() - seconds * 10**9
        os.utime(folder, ns=(then, then))


def counting(name, calls):
    """Replace manifest.<name> by a wrapper that counts its calls in calls[name]."""
    real = getattr(manifest, name)
    calls[name] = 0

    def wrapper(*args):
        calls[name] += 1
        return real(*args)

    setattr(manifest, name, wrapper)


def timed(root, cache):
    start = time.perf_counter()
    found = scan_voxceleb(root, cache_dir=cache, min_seconds=0)  # the tiny files are all under 0.5 s
    return time.perf_counter() - start, found


def cached_loads(root, cache, calls):
    """Median seconds of REPEATS cached loads, and the header reads and folder listings they made."""
    for name in calls:
        calls[name] = 0
    seconds = statistics.median(timed(root, cache)[0] for _ in range(REPEATS))
    return seconds, calls['_read_header'], calls['_list_folder'] // REPEATS


def main():
    calls = {}
    counting('_read_header', calls)
    counting('_list_folder', calls)
    with tempfile.TemporaryDirectory() as scratch:
        root, cache = os.path.join(scratch, 'vox1'), os.path.join(scratch, 'cache')
        start = time.perf_counter()
        num_videos = write_tree(root)
        print(
            f'bench_manifest: {cpu_model()}, {os.cpu_count()} logical cores; tree of {NUM_FILES:,} files, '
            f'{NUM_SPEAKERS:,} speakers, {num_videos:,} video folders written in {time.perf_counter() - start:.1f} s'
        )
        first_s, found = timed(root, cache)
        assert len(found.paths) == NUM_FILES and len(found.speakers) == NUM_SPEAKERS, (len(found.paths), found.notes)
        assert calls['_read_header'] == NUM_FILES
        print(
            f'files={len(found.paths):,} speakers={len(found.speakers):,} first_scan_s={first_s:.3f} '
            f'(prefetch threads {manifest.PREFETCH_THREADS}) notes={found.notes}'
        )
        fresh_s, reads, listed = cached_loads(root, cache, calls)
        print(f'fresh tree: cached_load_s={fresh_s:.3f} header_reads={reads} folders_listed_again={listed}')
        assert reads == 0, 'a cache hit read headers'
        date_back(root, 3600)
        rescan_s, _ = timed(root, cache)
        old_s, reads, listed = cached_loads(root, cache, calls)
        cache_mb = os.path.getsize(manifest.cache_path(cache, root)) / 1e6
        print(
            f'tree dated an hour back: rescan_s={rescan_s:.3f} cached_load_s={old_s:.3f} header_reads={reads} '
            f'folders_listed_again={listed} cache_file_mb={cache_mb:.1f}'
        )
        assert reads == 0, 'a cache hit read headers'
    print(f'bench_manifest: cached_load_s={old_s:.3f}')


if __name__ == '__main__':
    main()
