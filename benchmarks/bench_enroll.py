"""Enrollment speed: batched (as evaluation runs it) vs one utterance at a time, in one run.

    python benchmarks/bench_enroll.py [--utterances 48] [--device cpu|cuda] [--repeats 3]

The demo's model (tiny Wav2Vec2 teacher, 2-layer student, ECAPA-TDNN of 128 channels) embeds
utterances of VoxCeleb-like lengths (4-20 s), each whole and as 5 segments of 3 s, from wav files:
(a) one utterance at a time (its full wave, then its 5 segments), (b) batched within
eval_batch_seconds of audio per forward (segments of many utterances together; full utterances
padded together where the front end allows it, else alone). Both with the same data workers.
Also with a per-frame-normalised front end (feat_extract_norm='layer', as in wav2vec2-large-xlsr-53),
where full utterances are padded into one forward too. Last line: `bench_enroll: ratio=X` (the
demo model's batched / one-at-a-time utterances per second).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from arguments import get_args  # noqa: E402
from data.audio import FRAME_SAMPLES, SAMPLE_RATE  # noqa: E402
from evaluation.evaluate import embed_utterances  # noqa: E402
from machine import describe  # noqa: E402
from models.build import build_model  # noqa: E402
from models.ssl import load_teacher  # noqa: E402
from utils.distributed import data_workers  # noqa: E402


def write_utterances(root, count, seed=0):
    """count wav files of 4-20 s (uniform), VoxCeleb-like keys; their keys."""
    rng = np.random.default_rng(seed)
    keys = []
    for i in range(count):
        key = f'id1{i:04d}/video/00001.wav'
        os.makedirs(os.path.join(root, os.path.dirname(key)), exist_ok=True)
        wave = 0.1 * rng.standard_normal(int(rng.uniform(4, 20) * SAMPLE_RATE))
        sf.write(os.path.join(root, key), wave.astype(np.float32), SAMPLE_RATE)
        keys.append(key)
    return keys


def demo_model(args, front_end_norm, device):
    torch.manual_seed(args['seed'])
    tiny = dict(args['tiny_ssl'])
    if front_end_norm == 'layer':
        tiny.update(feat_extract_norm='layer', do_stable_layer_norm=True)
    return build_model(args, load_teacher('tiny', tiny), num_classes=100).to(device).eval()


def timed(embed, repeats):
    """Median seconds of `repeats` runs, after one warm-up run; and the last run's vectors."""
    vectors = embed()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        vectors = embed()
        times.append(time.perf_counter() - start)
    return statistics.median(times), vectors


def compare(args, front_end_norm, root, keys, device, workers, repeats):
    """Utterances/s of (a) the previous enrollment: one at a time, files read by `workers` loader
    processes; (b) one at a time, files read as evaluation now reads them on this device;
    (c) batched as evaluation runs it. Returns (c) / (b): what batching alone gives."""
    model = demo_model(args, front_end_norm, device)
    num_samples = args['num_test_frames'] * FRAME_SAMPLES
    budget = round(args['eval_batch_seconds'] * SAMPLE_RATE)
    loading = workers if device.type == 'cuda' else 0  # as evaluation.evaluate.evaluate chooses

    def run(max_samples, num_workers):
        return embed_utterances(
            model, root, keys, num_samples, args['num_seg'], device, num_workers, False, max_samples
        )

    previous_s, _ = timed(lambda: run(None, workers), repeats)
    alone_s, alone = timed(lambda: run(None, loading), repeats)
    batched_s, batched = timed(lambda: run(budget, loading), repeats)
    difference = max((a - b).abs().max().item() for a, b in zip(alone, batched))
    how = 'full utterances padded together' if front_end_norm == 'layer' else 'full utterances alone'
    print(
        f"front end '{front_end_norm}' ({how}, segments batched):\n"
        f'  previous (one at a time, {workers} loader workers) {len(keys) / previous_s:6.1f} utt/s\n'
        f'  one at a time ({loading} loader workers)            {len(keys) / alone_s:6.1f} utt/s\n'
        f'  batched ({loading} loader workers)                  {len(keys) / batched_s:6.1f} utt/s   '
        f'{alone_s / batched_s:.2f}x one at a time, {previous_s / batched_s:.2f}x the previous; '
        f'max |embedding difference| {difference:.1e}'
    )
    return alone_s / batched_s


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--utterances', type=int, default=48)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--repeats', type=int, default=3)
    options = parser.parse_args()
    args = get_args([])[0]
    device = torch.device(options.device)
    workers = data_workers(args['num_workers'])
    print(
        f'{describe()}; torch threads {torch.get_num_threads()}; device {device}; data workers {workers}; '
        f'eval_batch_seconds {args["eval_batch_seconds"]}; {options.utterances} utterances of 4-20 s, '
        f'{args["num_seg"]} segments of {args["num_test_frames"] * FRAME_SAMPLES / SAMPLE_RATE:.0f} s each; '
        f'median of {options.repeats}'
    )
    with tempfile.TemporaryDirectory() as root:
        keys = write_utterances(root, options.utterances)
        ratio = compare(args, 'group', root, keys, device, workers, options.repeats)
        compare(args, 'layer', root, keys, device, workers, options.repeats)
    print(f'bench_enroll: ratio={ratio:.2f}')


if __name__ == '__main__':
    main()
