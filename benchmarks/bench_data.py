"""Training items per second of one data worker, with and without augmentation: how many
DataLoader workers (num_workers, per GPU) it takes to keep a GPU fed.

    python benchmarks/bench_data.py                       # a small generated corpus in VoxCeleb layout
    python benchmarks/bench_data.py --path_train /data/vox2/dev/aac --path_musan /data/musan \\
        --path_rir /data/RIRS_NOISES/simulated_rirs --gpu-items-per-s 1400

One worker is one process calling dataset[i] in a loop, so this calls TrainSet's items in a loop, in
one process with one torch thread (DataLoader workers run with one). Each item is a random 2 s crop
(num_train_frames x 160 samples) of a training file, its clean copy and its augmented copy, as the
training loop gets it. Three settings: no augmentation, the paper's (aug_p, clip_p, ease_p of
arguments.py) and every item augmented (aug_p 1.0). Each is timed over --items random items,
--repeats times on fresh draws; the median rate is reported. On a real tree the first reads of a file
come from disk, so later repetitions may read from the page cache; the generated corpus is in it from
the start. The last line is `bench_data: items_per_s=X`, the paper setting's rate.
"""

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arguments import EXPERIMENT_ARGS, SYSTEM_ARGS  # noqa: E402
from data.audio import FRAME_SAMPLES, SAMPLE_RATE  # noqa: E402
from data.augment import Augmenter  # noqa: E402
from data.datasets import TrainSet  # noqa: E402
from data.demo import prepare_demo  # noqa: E402
from data.voxceleb import scan_voxceleb  # noqa: E402
from machine import describe  # noqa: E402

# a corpus big enough that crops, MUSAN files and RIRs vary; made in a few seconds, once
BENCH_DEMO = dict(
    num_train_speakers=20, videos_per_speaker=2, utterances_per_video=3, num_musan_per_kind=10, num_rirs=20
)


def dataset_paths(args) -> dict:
    """The user's path_train / path_musan / path_rir when all three are given, else the generated corpus's."""
    given = {key: getattr(args, key) for key in ('path_train', 'path_musan', 'path_rir')}
    if all(given.values()):
        return given
    if any(given.values()):
        missing = ', '.join(f'--{key}' for key, value in given.items() if not value)
        raise SystemExit(
            f'bench_data: give all of --path_train, --path_musan and --path_rir, or none; missing {missing}'
        )
    return prepare_demo(os.path.join(args.path_cache, 'bench_data'), **BENCH_DEMO)


def items_per_second(dataset, num_items, repeats, seed) -> list[float]:
    """Rates of `repeats` passes over num_items random items each, every pass on its own draw and epoch
    (so other crops and augmentations). Items are indexed item[0], item[1]: clean and augmented waves."""
    rates = []
    for repeat in range(repeats):
        dataset.set_epoch(repeat)
        indices = np.random.default_rng([seed, repeat]).integers(0, len(dataset), num_items)
        start = time.perf_counter()
        for i in indices:
            item = dataset[int(i)]
            assert item[0].shape == item[1].shape == (dataset.num_samples,)
        rates.append(num_items / (time.perf_counter() - start))
    return rates


def main(args):
    torch.set_num_threads(1)
    paths = dataset_paths(args)
    manifest = scan_voxceleb(paths['path_train'], 'path_train')
    num_samples = EXPERIMENT_ARGS['num_train_frames'] * FRAME_SAMPLES
    aug_p, clip_p, ease_p = (EXPERIMENT_ARGS[key] for key in ('aug_p', 'clip_p', 'ease_p'))
    settings = {
        'none': None,
        f'paper (aug_p {aug_p}, clip_p {clip_p}, ease_p {ease_p})': Augmenter(
            paths['path_musan'], paths['path_rir'], aug_p, clip_p, ease_p
        ),
        f'every item (aug_p 1.0, clip_p {clip_p}, ease_p {ease_p})': Augmenter(
            paths['path_musan'], paths['path_rir'], 1.0, clip_p, ease_p
        ),
    }
    print(
        f'bench_data: one worker (one process, {torch.get_num_threads()} torch thread), '
        f'{num_samples / SAMPLE_RATE:.1f} s crops, {len(manifest.paths):,} training files of '
        f'{len(manifest.speakers):,} speakers under {paths["path_train"]}'
    )
    print(f'{describe()}; {args.items} items x {args.repeats} repeats, median')
    width = max(len(name) for name in settings)
    print(
        f'\n{"augmentation":<{width}} {"items/s":>9} {"ms/item":>8} {"range items/s":>16}  '
        f'workers for {args.gpu_items_per_s:,.0f} items/s'
    )
    medians = {}
    for name, augment in settings.items():
        dataset = TrainSet(manifest.paths, manifest.labels, num_samples, augment=augment, seed=EXPERIMENT_ARGS['seed'])
        items_per_second(dataset, min(args.items, 20), 1, args.seed)  # warm-up: imports, first reads
        rates = items_per_second(dataset, args.items, args.repeats, args.seed)
        medians[name] = statistics.median(rates)
        workers = math.ceil(args.gpu_items_per_s / medians[name])
        print(
            f'{name:<{width}} {medians[name]:9.1f} {1000 / medians[name]:8.2f} '
            f'{min(rates):7.1f}-{max(rates):<8.1f}  {workers}'
        )
    paper = list(medians.values())[1]
    print(
        f'\nA GPU that trains on {args.gpu_items_per_s:,.0f} items/s needs num_workers >= '
        f'{math.ceil(args.gpu_items_per_s / paper)} of these with the paper augmentation, each on its own '
        f'core ({os.cpu_count()} here, shared with the training process).'
    )
    print(f'bench_data: items_per_s={paper:.1f}')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--path_train', help='VoxCeleb-like training root (default: the generated corpus)')
    parser.add_argument('--path_musan', help='MUSAN root with speech/, music/, noise/')
    parser.add_argument('--path_rir', help='RIR root, searched recursively')
    parser.add_argument('--path_cache', default=SYSTEM_ARGS['path_cache'], help='where the generated corpus is kept')
    parser.add_argument('--items', type=int, default=1000, help='items per timed pass')
    parser.add_argument('--repeats', type=int, default=7, help='timed passes per setting')
    parser.add_argument(
        '--gpu-items-per-s',
        type=float,
        default=1000.0,
        help='the training rate of one GPU, items/s, to size num_workers for',
    )
    parser.add_argument('--seed', type=int, default=0, help='which items are drawn')
    return parser.parse_args(argv)


if __name__ == '__main__':
    main(parse_args())
