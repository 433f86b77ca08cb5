"""The run's telemetry: the step time split into data wait and compute, throughput, memory and time
to finish, against a clock the test moves; the warnings' rules; a slow data loader warned about in
a real epoch; the totals carried by a checkpoint. (A demo run's metrics: tests/test_main.py; two
processes counted together: tests/trainer/test_ddp.py.)"""

import os
import time

import numpy as np
import pytest
import torch

from data.datasets import TrainSet
from data.voxceleb import training_manifest
from log.controller import LogModuleController
from models.build import build_model
from models.ssl import load_teacher
from tests.log.recorder import MetricRecorder
from tests.trainer.test_oskdft import ARGS, TINY
from tests.trainer.test_run import META, new_job
from trainer.parts import build_optimizer, build_train_loader, set_lrs
from trainer.schedule import Schedule
from trainer.state import TrainState, restore, save
from trainer.train import Job, StopSignal, train_epoch
from utils.hardware import GIB, peak_resident_bytes
from utils.progress import format_duration
from utils.telemetry import Telemetry

CPU = torch.device('cpu')


class Clock:
    """A clock that moves only when told."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def batches_taking(clock, seconds, count):
    """`count` batches, each making the loader wait `seconds`."""
    for index in range(count):
        clock.now += seconds
        yield index


def test_an_interval_splits_step_time_into_data_wait_and_compute_and_counts_the_time_to_finish():
    """Each step: 0.25 s waiting for the loader, 0.75 s computing, 8 utterances. 3 epochs of 8 steps,
    Vox1-O (10 s) scored before training and after each epoch, the final evaluation 4 x as long."""
    clock = Clock()
    telemetry = Telemetry(CPU, clock=clock)
    telemetry.plan(epochs=3, scored=[1, 2, 3], final_scale=4.0)
    with telemetry.timed_evaluation(tuning=True):
        clock.now += 10.0
    telemetry.start_epoch()
    reports = []
    for step, _ in enumerate(telemetry.timed(batches_taking(clock, 0.25, 8)), start=1):
        telemetry.count(8)
        clock.now += 0.75
        if step % 4 == 0:
            reports.append(telemetry.interval(1, step, 8))
    for report in reports:
        assert report.steps == 4
        assert report.seconds_per_step == pytest.approx(1.0)
        assert report.data_seconds_per_step == pytest.approx(0.25)
        assert report.compute_seconds_per_step == pytest.approx(0.75)
        assert report.data_wait_fraction == pytest.approx(0.25)
        assert report.utterances_per_second == pytest.approx(8.0)
        assert report.warnings == []
    # left: 4 steps of this epoch, 2 epochs of 8 steps, Vox1-O after epochs 1-3 and the final (4 x 10 s)
    assert reports[0].eta_epoch == pytest.approx(4.0) and reports[1].eta_epoch == 0.0
    assert reports[0].eta_run == pytest.approx(4.0 + 16.0 + 70.0)
    assert reports[1].eta_run == pytest.approx(16.0 + 70.0)
    metrics = reports[0].metrics()
    assert metrics['perf/utterances_per_second'] == pytest.approx(8.0)
    assert metrics['perf/cpu_resident_gib/rank0'] == pytest.approx(peak_resident_bytes() / GIB, rel=0.05)
    assert '8.0 utterances/s, 1.000 s/step = data 0.250 + compute 0.750 (waiting for data 25.0%)' in reports[0].text()
    assert reports[0].text().endswith('ETA epoch 0:00:04, run 0:01:30')

    for step, _ in enumerate(telemetry.timed(batches_taking(clock, 0.5, 2)), start=1):  # a tail, no report
        telemetry.count(8)
        clock.now += 0.5
    telemetry.flush()
    summary = telemetry.summary()
    assert summary['training_steps'] == 10 and summary['training_seconds'] == pytest.approx(10.0)
    assert summary['utterances_per_second'] == pytest.approx(8.0)
    assert summary['data_wait_fraction'] == pytest.approx((8 * 0.25 + 2 * 0.5) / 10.0)
    assert summary['evaluation_seconds'] == pytest.approx(10.0)
    assert summary['peak_cpu_resident_gib'] == pytest.approx(peak_resident_bytes() / GIB, rel=0.05)
    assert summary['processes'] == 1 and summary['hardware']['gpu_count'] == 0
    assert summary['hardware']['cpu_cores'] == os.cpu_count() and summary['hardware']['torch'] == torch.__version__


def test_the_data_wait_warning_needs_three_slow_intervals_in_a_row_and_comes_once():
    telemetry = Telemetry(CPU, num_workers=3)
    fractions = [0.5, 0.9, 0.2, 0.31, 0.5, 0.6, 0.95, 0.99]
    warnings = [telemetry.wait_warning(fraction) for fraction in fractions]
    assert warnings[:5] == [None] * 5 and warnings[6:] == [None, None]
    assert warnings[5].startswith('warning: training waited for data 47.0% of the time over the last 3 intervals')
    assert 'Raise num_workers (now 3 loading processes per training process)' in warnings[5]


def test_the_memory_warning_comes_within_five_percent_of_a_gpus_capacity_once():
    telemetry = Telemetry(CPU, batch_size=128)
    assert telemetry.memory_warning([(2 * GIB, 2 * GIB, 0)]) is None  # a CPU: no capacity
    assert telemetry.memory_warning([(70 * GIB, 75.9 * GIB, 80 * GIB)]) is None  # 94.9 %
    warning = telemetry.memory_warning([(60 * GIB, 70 * GIB, 80 * GIB), (70 * GIB, 76 * GIB, 80 * GIB)])
    assert warning == (
        'warning: GPU memory is nearly full on rank 1: 76.0 GiB of 80.0 GiB reserved at its peak '
        '(95%); lower batch_size (now 128) before a step runs out of memory'
    )
    assert telemetry.memory_warning([(79 * GIB, 79 * GIB, 80 * GIB)]) is None


def test_peak_resident_memory_is_the_kernels_high_water_mark_and_grows_with_an_allocation():
    before = peak_resident_bytes()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, written, so resident
    after = peak_resident_bytes()
    with open('/proc/self/status') as file:
        high_water = next(int(line.split()[1]) * 1024 for line in file if line.startswith('VmHWM'))
    assert after >= before and after >= block.nbytes
    assert abs(after - high_water) <= 8 * 2**20
    del block


def test_durations_read_as_hours_minutes_seconds():
    assert format_duration(0.4) == '0:00:00'
    assert format_duration(3 * 3600 + 4 * 60 + 5.6) == '3:04:06'
    assert format_duration(2 * 86400 + 3 * 3600 + 4 * 60 + 5) == '2 days, 3:04:05'


def test_a_slow_data_loader_gives_one_warning_naming_num_workers(corpus, tmp_path, monkeypatch):
    """The demo corpus through the real loader (num_workers=0), each item 250 ms late (so that even
    on a loaded machine the step waits mostly for data): steps wait for
    data most of their time; the warning comes once, with the mean of the logged fractions."""
    args = dict(
        ARGS,
        **corpus,
        batch_size=4,
        num_workers=0,
        log_interval=1,
        path_cache=str(tmp_path),
        num_train_frames=50,
        epoch=2,
    )
    recorder = MetricRecorder()
    logger = LogModuleController([recorder], enabled=True)
    manifest = training_manifest(args, logger)
    loader = build_train_loader(args, manifest, CPU)
    loader.dataset.set_epoch(1)
    original = TrainSet.__getitem__

    def late_item(self, index):
        time.sleep(0.25)
        return original(self, index)

    monkeypatch.setattr(TrainSet, '__getitem__', late_item)
    torch.manual_seed(0)
    teacher = load_teacher('tiny', TINY)
    model = build_model(args, teacher, len(manifest.speakers))
    optimizer = build_optimizer(model)
    set_lrs(optimizer, 1, Schedule.of(args))
    texts = []
    logger.log_text = texts.append
    job = Job(
        model,
        teacher,
        loader,
        optimizer,
        torch.amp.GradScaler('cpu', enabled=False),
        None,
        args,
        CPU,
        logger,
        telemetry=Telemetry(CPU, num_workers=loader.num_workers, batch_size=4),
    )
    train_epoch(job, 1, TrainState(), StopSignal(), lambda: None)

    warnings = [text for text in texts if text.startswith('warning')]
    assert len(warnings) == 1 and 'Raise num_workers (now 0 loading processes' in warnings[0]
    fractions = [record['value'] for record in recorder.records if record['name'] == 'perf/data_wait_fraction']
    assert len(fractions) == 6 and all(0.0 <= fraction <= 1.0 for fraction in fractions)
    lines = [text for text in texts if text.startswith('epoch 1 step')]
    warned_after = next(i for i, text in enumerate(texts) if text.startswith('warning')) - 1
    interval = lines.index(texts[warned_after])
    slow = fractions[interval - 2 : interval + 1]
    assert min(slow) > 0.3
    assert f'{sum(slow) / 3:.1%} of the time over the last 3 intervals' in warnings[0]


def test_a_checkpoint_carries_the_runs_totals_with_the_steps_since_the_last_interval(tmp_path):
    job, logger = new_job(tmp_path, seed=0)
    job.telemetry = Telemetry(CPU)
    job.telemetry.totals.update(steps=40, utterances=1280.0, train_seconds=33.5, evaluation_seconds=7.0)
    for _ in range(2):  # two steps of an interval not yet reported
        job.telemetry.count(32)
    save(job, TrainState(), META)
    resumed, _ = new_job(tmp_path / 'other', seed=1)
    restore(resumed, torch.load(f'{logger.run_dir}/last.pt', weights_only=True), logger.run_dir)
    totals = resumed.telemetry.totals
    assert totals['steps'] == 42 and totals['utterances'] == 1344.0 and totals['evaluation_seconds'] == 7.0
    assert totals['train_seconds'] > 33.5 and totals == job.telemetry.totals
