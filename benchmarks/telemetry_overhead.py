"""What the run's telemetry (utils/telemetry.py: the data-wait clock around every batch, and at
every log_interval the device synchronised, the ranks' figures gathered, the perf/ and health/
metrics and the longer log line written) costs on the embedded demo's training steps.

    python benchmarks/telemetry_overhead.py                 # 30 rounds of 10 steps a side (about 6 min)
    python benchmarks/telemetry_overhead.py --rounds 60     # a finer median

The demo's model, batch (32 x 2 s) and log_interval (10), one model and optimizer for both sides;
the demo corpus's first batches loaded once, so both sides train on the same batches and no data
loading varies between them. Each round trains one block of log_interval steps (one report, to a
run folder of files, as a run writes it) with the telemetry on and one with it off, in alternating
order; the overhead is the median over the rounds of (block time on / block time off - 1), each pair
measured back to back so that a change in the machine's load hits both. The last line is
`telemetry_overhead: percent=X` (the issue's bound: at most 2).
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arguments import get_args  # noqa: E402
from data.demo import prepare_demo  # noqa: E402
from data.voxceleb import training_manifest  # noqa: E402
from log.controller import LogModuleController  # noqa: E402
from machine import describe  # noqa: E402
from models.build import build_model  # noqa: E402
from models.ssl import load_teacher  # noqa: E402
from trainer.parts import build_optimizer, build_train_loader, set_lrs  # noqa: E402
from trainer.schedule import Schedule
from trainer.state import TrainState  # noqa: E402
from trainer.train import Job, StopSignal, train_epoch  # noqa: E402
from utils.distributed import data_workers  # noqa: E402
from utils.telemetry import Telemetry  # noqa: E402

CPU = torch.device('cpu')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rounds', type=int, default=30, help='blocks timed per side (one ratio varies by 10 %%)')
    parser.add_argument('--batches', type=int, default=5, help='distinct demo batches, cycled through')
    return parser.parse_args()


def demo_batches(args, logger, count):
    """The demo loader's first `count` batches (clean, augmented, labels, unreadable files)."""
    manifest = training_manifest(args, logger)
    loader = build_train_loader(dict(args, num_workers=0), manifest, CPU)
    loader.batch_sampler.set_epoch(1, 0)
    loader.dataset.set_epoch(1)
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == count:
            return batches, len(manifest.speakers)
    return batches, len(manifest.speakers)


def main():
    options = parse_args()
    args = get_args(['model_name_or_path=tiny'])[0]  # the demo's sizes and log_interval; a random teacher of the
    # demo teacher's shape (its weights do not change the time of a step)
    steps = args['log_interval']
    with tempfile.TemporaryDirectory() as path_log:
        logger = LogModuleController.Builder('overhead', 'benchmark').use_local(path_log).build()
        args.update(prepare_demo(f'{args["path_cache"]}/demo', seed=args['seed']))
        batches, speakers = demo_batches(args, logger, options.batches)
        torch.manual_seed(args['seed'])
        teacher = load_teacher(args['model_name_or_path'], args['tiny_ssl'])
        model = build_model(args, teacher, speakers)
        optimizer = build_optimizer(model)
        set_lrs(optimizer, 1, Schedule.of(args))
        job = Job(model, teacher, None, optimizer, torch.amp.GradScaler('cpu', enabled=False), None, args, CPU, logger)
        sides = {
            'on': Telemetry(CPU, num_workers=data_workers(args['num_workers']), batch_size=args['batch_size']),
            'off': Telemetry(enabled=False),
        }
        times = {'on': [], 'off': []}
        cpu_times = {'on': [], 'off': []}
        print(
            f"{describe()}; torch threads {torch.get_num_threads()}; the demo's steps (batch {args['batch_size']} "
            f'x {args["num_train_frames"] / 100:.0f} s, log_interval {steps}); {options.rounds} rounds of one '
            f'{steps}-step block a side',
            flush=True,
        )
        for round_ in range(-1, options.rounds):  # round -1: warm-up, not counted
            for side in ('on', 'off') if round_ % 2 == 0 else ('off', 'on'):
                job.telemetry = sides[side]
                job.loader = [batches[i % len(batches)] for i in range(steps)]
                start, cpu_start = time.perf_counter(), time.process_time()
                train_epoch(job, 1, TrainState(), StopSignal(), lambda: None)
                if round_ >= 0:
                    times[side].append(time.perf_counter() - start)
                    cpu_times[side].append(time.process_time() - cpu_start)
        logger.finish()
    for clock, measured in (('wall', times), ('cpu', cpu_times)):
        ratios = [on / off for on, off in zip(measured['on'], measured['off'])]
        print(
            f'{clock:4s} s/step: off median {statistics.median(measured["off"]) / steps:.4f} fastest '
            f'{min(measured["off"]) / steps:.4f}; on median {statistics.median(measured["on"]) / steps:.4f} fastest '
            f'{min(measured["on"]) / steps:.4f}; per-round ratio on / off median {statistics.median(ratios):.4f} '
            f'(range {min(ratios):.4f} - {max(ratios):.4f})'
        )
    percent = (statistics.median(on / off for on, off in zip(times['on'], times['off'])) - 1) * 100
    print(f'telemetry_overhead: percent={percent:.2f}')


if __name__ == '__main__':
    main()
