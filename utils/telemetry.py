"""Is the run healthy: throughput, where a step's time goes, memory and the time to finish, per
logging interval; a warning when the data loader or the GPU's memory holds training back; the
run's summary for results.json.

Cheap by construction: a step reads the clock twice (around the loader's next batch: the data
wait) and counts its utterances. Only at the end of an interval is the device synchronised (its
queued work is then done, so the interval's wall time is the real time of its steps) and are the
ranks' figures gathered, in one collective: compute = wall time - data wait.
"""

import contextlib
import time
from dataclasses import dataclass, field

import torch

from utils import distributed
from utils.hardware import GIB, describe_machine, gpu_summary, peak_memory_bytes
from utils.progress import format_duration

WAIT_WARNING_FRACTION = 0.3  # a data wait above this share of the step time ...
WAIT_WARNING_INTERVALS = 3  # ... in this many intervals in a row: one warning naming num_workers
MEMORY_WARNING_FRACTION = 0.95  # a GPU's peak reserved memory above this share: one warning naming batch_size
# what each rank sends at an interval's end: its counts, then its peak memory (utils.hardware.peak_memory_bytes)
ROW = ('utterances', 'wait_seconds', 'seconds', 'allocated', 'reserved', 'capacity')


@dataclass
class IntervalReport:
    """One interval's figures, every rank's counted; memory: every rank's (peak allocated, peak
    reserved, capacity) in bytes (on a CPU: peak resident, the same, 0)."""

    steps: int
    utterances_per_second: float
    seconds_per_step: float
    data_seconds_per_step: float
    data_wait_fraction: float
    memory: list
    on_gpu: bool
    eta_epoch: float  # seconds
    eta_run: float
    warnings: list = field(default_factory=list)

    @property
    def compute_seconds_per_step(self):
        return self.seconds_per_step - self.data_seconds_per_step

    def metrics(self):
        """{perf/... name: value}, memory in GiB per rank."""
        values = {
            'perf/utterances_per_second': self.utterances_per_second,
            'perf/seconds_per_step': self.seconds_per_step,
            'perf/data_seconds_per_step': self.data_seconds_per_step,
            'perf/compute_seconds_per_step': self.compute_seconds_per_step,
            'perf/data_wait_fraction': self.data_wait_fraction,
            'perf/eta_epoch_seconds': self.eta_epoch,
            'perf/eta_run_seconds': self.eta_run,
        }
        for rank, (allocated, reserved, _) in enumerate(self.memory):
            if self.on_gpu:
                values[f'perf/gpu_allocated_gib/rank{rank}'] = allocated / GIB
                values[f'perf/gpu_reserved_gib/rank{rank}'] = reserved / GIB
            else:
                values[f'perf/cpu_resident_gib/rank{rank}'] = allocated / GIB
        return values

    def text(self):
        rank = max(range(len(self.memory)), key=lambda r: self.memory[r][1])  # the fullest rank
        allocated, reserved, capacity = (value / GIB for value in self.memory[rank])
        memory = (
            f'GPU peak {allocated:.2f} GiB allocated, {reserved:.2f} reserved of {capacity:.1f}'
            if self.on_gpu
            else f'peak resident memory {allocated:.2f} GiB'
        )
        return (
            f'{self.utterances_per_second:.1f} utterances/s, {self.seconds_per_step:.3f} s/step = data '
            f'{self.data_seconds_per_step:.3f} + compute {self.compute_seconds_per_step:.3f} (waiting for '
            f'data {self.data_wait_fraction:.1%}), {memory} (rank {rank}) | ETA epoch '
            f'{format_duration(self.eta_epoch)}, run {format_duration(self.eta_run)}'
        )


class Telemetry:
    """The run's clock and counters, on every rank. enabled=False: nothing is timed or reported
    (the loader is iterated as it is), so the loop runs as it would without it."""

    def __init__(self, device=torch.device('cpu'), enabled=True, num_workers=0, batch_size=0, clock=time.perf_counter):
        self.device = device
        self.enabled = enabled
        self.num_workers = num_workers  # named by the data-wait warning
        self.batch_size = batch_size  # named by the memory warning
        self.clock = clock
        self.epochs, self.scored, self.final_scale = 1, set(), 0.0
        # the run so far (a checkpoint carries it, so the summary of a resumed run covers all of it)
        self.totals = {
            'steps': 0,
            'utterances': 0.0,
            'train_seconds': 0.0,
            'wait_seconds': 0.0,
            'evaluation_seconds': 0.0,
            'tuning_seconds': 0.0,
            'tunings': 0,
            'peak_allocated': 0.0,
            'peak_reserved': 0.0,
        }
        self.slow_fractions = []  # the data-wait fractions of the slow intervals in a row
        self.warned = set()
        self.start_epoch()

    def plan(self, epochs, scored, final_scale):
        """What the run ETA counts beyond this epoch's steps: the run's epochs, those after which
        Vox1-O is scored, and the final evaluation's time in Vox1-O evaluations."""
        self.epochs, self.scored, self.final_scale = epochs, set(scored), final_scale

    def start_epoch(self):
        self.mark = self.clock()  # the start of the interval in progress
        self.wait, self.utterances, self.steps = 0.0, 0, 0
        self.epoch_seconds, self.epoch_steps = 0.0, 0

    def timed(self, batches):
        """The batches, the time spent waiting for each added to the interval's data wait (starting
        the loader's workers included)."""
        if not self.enabled:
            return batches
        return self._timed(batches)

    def _timed(self, batches):
        start = self.clock()
        iterator = iter(batches)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self.wait += self.clock() - start
            yield batch
            start = self.clock()

    def count(self, utterances):
        """One step of this rank's `utterances`."""
        self.utterances += utterances
        self.steps += 1

    def interval(self, epoch, step, steps):
        """Ends the interval at step `step` of `steps` of epoch `epoch` (every rank calls it): its
        report, every rank's figures in it; None when disabled."""
        if not self.enabled:
            return None
        steps_done, rows = self.steps, self._close_interval()
        utterances, wait, seconds = rows[:, 0].sum().item(), rows[:, 1].max().item(), rows[:, 2].max().item()
        step_seconds = self.epoch_seconds / max(self.epoch_steps, 1)
        eta_epoch = (steps - step) * step_seconds
        tuning = self.totals['tuning_seconds'] / max(self.totals['tunings'], 1)
        evaluations = sum(1 for e in range(epoch, self.epochs + 1) if e in self.scored) + self.final_scale
        eta_run = eta_epoch + (self.epochs - epoch) * steps * step_seconds + evaluations * tuning
        report = IntervalReport(
            steps_done,
            utterances / seconds,
            seconds / steps_done,
            wait / steps_done,
            wait / seconds,
            rows[:, 3:].tolist(),
            self.device.type == 'cuda',
            eta_epoch,
            eta_run,
        )
        report.warnings = [
            text for text in (self.wait_warning(report.data_wait_fraction), self.memory_warning(report.memory)) if text
        ]
        return report

    def flush(self):
        """Adds the steps since the last interval to the run's totals (every rank calls it): at an
        epoch's end, and before a checkpoint, so that a resumed run's totals miss no step."""
        if self.enabled and self.steps:
            self._close_interval()

    def _close_interval(self):
        """Synchronises the device, gathers every rank's row (ROW) of the interval: (world, 6)
        float64 on the CPU; adds it to the totals and starts the next interval."""
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        now = self.clock()
        row = torch.tensor(
            [self.utterances, self.wait, now - self.mark, *peak_memory_bytes(self.device)],
            dtype=torch.float64,
            device=self.device,
        )
        rows = distributed.gather_rows(row).cpu()
        seconds = rows[:, 2].max().item()
        self.totals['steps'] += self.steps
        self.totals['utterances'] += rows[:, 0].sum().item()
        self.totals['train_seconds'] += seconds
        self.totals['wait_seconds'] += rows[:, 1].max().item()
        self.totals['peak_allocated'] = max(self.totals['peak_allocated'], rows[:, 3].max().item())
        self.totals['peak_reserved'] = max(self.totals['peak_reserved'], rows[:, 4].max().item())
        self.epoch_seconds += seconds
        self.epoch_steps += self.steps
        self.mark, self.wait, self.utterances, self.steps = now, 0.0, 0, 0
        return rows

    def wait_warning(self, fraction):
        """One warning per run, once WAIT_WARNING_INTERVALS intervals in a row waited for data more
        than WAIT_WARNING_FRACTION of their time."""
        slow = fraction > WAIT_WARNING_FRACTION
        self.slow_fractions = (self.slow_fractions + [fraction])[-WAIT_WARNING_INTERVALS:] if slow else []
        if len(self.slow_fractions) < WAIT_WARNING_INTERVALS or 'wait' in self.warned:
            return None
        self.warned.add('wait')
        mean = sum(self.slow_fractions) / len(self.slow_fractions)
        return (
            f'warning: training waited for data {mean:.1%} of the time over the last {len(self.slow_fractions)} '
            f'intervals (more than {WAIT_WARNING_FRACTION:.0%}): the data loader does not keep up. Raise '
            f'num_workers (now {self.num_workers} loading processes per training process) or put the data '
            f'on faster storage'
        )

    def memory_warning(self, memory):
        """One warning per run when a GPU's peak reserved memory is within 5 % of its capacity."""
        full = [
            (rank, reserved, capacity)
            for rank, (_, reserved, capacity) in enumerate(memory)
            if capacity and reserved >= MEMORY_WARNING_FRACTION * capacity
        ]
        if not full or 'memory' in self.warned:
            return None
        self.warned.add('memory')
        rank, reserved, capacity = full[0]
        return (
            f'warning: GPU memory is nearly full on rank {rank}: {reserved / GIB:.1f} GiB of {capacity / GIB:.1f} '
            f'GiB reserved at its peak ({reserved / capacity:.0%}); lower batch_size (now {self.batch_size}) '
            f'before a step runs out of memory'
        )

    @contextlib.contextmanager
    def timed_evaluation(self, tuning=False):
        """Times an evaluation into the run's total; tuning: a Vox1-O evaluation after an epoch (or
        before the first), whose mean time the run ETA counts per scored epoch."""
        start = self.clock()
        yield
        seconds = self.clock() - start
        self.totals['evaluation_seconds'] += seconds
        if tuning:
            self.totals['tuning_seconds'] += seconds
            self.totals['tunings'] += 1

    def summary(self):
        """The run's performance for results.json (every rank calls it: the ranks' peak memory and
        GPUs are gathered); None on ranks other than 0."""
        gathered = distributed.gather_objects((peak_memory_bytes(self.device), gpu_name(self.device)))
        if gathered is None:
            return None
        totals = self.totals
        allocated = max([totals['peak_allocated']] + [memory[0] for memory, _ in gathered])
        reserved = max([totals['peak_reserved']] + [memory[1] for memory, _ in gathered])
        gpus = [name for _, name in gathered if name]
        summary = {}
        if totals['steps']:
            summary.update(
                utterances_per_second=totals['utterances'] / totals['train_seconds'],
                data_wait_fraction=totals['wait_seconds'] / totals['train_seconds'],
                seconds_per_step=totals['train_seconds'] / totals['steps'],
                training_steps=totals['steps'],
                training_seconds=totals['train_seconds'],
            )
        summary['evaluation_seconds'] = totals['evaluation_seconds']
        if self.device.type == 'cuda':
            summary.update(peak_gpu_allocated_gib=allocated / GIB, peak_gpu_reserved_gib=reserved / GIB)
        else:
            summary['peak_cpu_resident_gib'] = allocated / GIB
        summary['processes'] = distributed.world_size()
        summary['hardware'] = {**describe_machine(), 'gpus': gpus, 'gpu_count': len(gpus)}
        return summary

    def state_dict(self):
        return dict(self.totals)

    def load_state_dict(self, totals):
        self.totals.update(totals)


def gpu_name(device):
    return torch.cuda.get_device_name(device) if device.type == 'cuda' else None


def summary_text(summary):
    """The summary in one line of the log."""
    parts = []
    if 'utterances_per_second' in summary:
        parts.append(
            f'{summary["utterances_per_second"]:.1f} utterances/s, waiting for data '
            f'{summary["data_wait_fraction"]:.1%}, training {format_duration(summary["training_seconds"])}'
        )
    parts.append(f'evaluation {format_duration(summary["evaluation_seconds"])}')
    if 'peak_gpu_reserved_gib' in summary:
        parts.append(
            f'GPU peak {summary["peak_gpu_allocated_gib"]:.2f} GiB allocated, '
            f'{summary["peak_gpu_reserved_gib"]:.2f} reserved'
        )
    else:
        parts.append(f'peak resident memory {summary["peak_cpu_resident_gib"]:.2f} GiB')
    hardware = summary['hardware']
    parts.append(
        f'{summary["processes"]} process(es); {hardware["cpu"]} ({hardware["cpu_cores"]} cores), '
        f'{gpu_summary(hardware)}; torch {hardware["torch"]}, CUDA {hardware["cuda"]}'
    )
    return 'performance: ' + ', '.join(parts)
