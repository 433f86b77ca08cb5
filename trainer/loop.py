"""The mechanics of a training epoch: mixed precision, one optimizer step per batch, non-finite
steps skipped, losses (and the run's telemetry: throughput, memory, time to finish) read from the
device once per interval, checkpoints within the epoch, and a clean stop on SIGTERM / SIGINT (a
cluster's pre-emption).

Every decision that changes what the processes do next (skip this step, save, stop) is taken
from flags combined over all ranks, so every rank takes it at the same step.
"""

import signal
import time
from dataclasses import dataclass, field

import torch

from data.datasets import TrainSet
from trainer.methods import METHODS
from trainer.methods.common import LOSS_NAMES
from utils import distributed
from utils.progress import format_duration, progress_bar
from utils.telemetry import Telemetry


class TrainingDiverged(Exception):
    """Too many non-finite steps in a row: the run was saved and stopped."""


@dataclass
class EpochState:
    """What a checkpoint within an epoch holds to continue it exactly."""

    step: int = 0  # steps done in this epoch
    sums: torch.Tensor = field(default_factory=lambda: torch.zeros(len(LOSS_NAMES) + 1, dtype=torch.float64))
    skipped: int = 0  # non-finite steps skipped in this epoch
    bad_in_row: int = 0

    def to_dict(self):
        return {'step': self.step, 'sums': self.sums.cpu(), 'skipped': self.skipped, 'bad_in_row': self.bad_in_row}

    def means(self):
        return loss_means(self.sums)


def global_step(epoch, step, steps_per_epoch):
    """Optimizer steps since the run began, at step `step` of epoch `epoch` (1-based): the step of
    the metrics logged every log_interval steps."""
    return (epoch - 1) * steps_per_epoch + step


def loss_means(sums):
    """{loss name: mean over the good steps}; sums holds LOSS_NAMES' sums, then the count (read from the device)."""
    values = sums.tolist()
    return {name: values[i] / max(values[-1], 1) for i, name in enumerate(LOSS_NAMES)}


@dataclass
class Job:
    """Everything a training epoch uses. model is the (DDP-wrapped) SpeakerNet."""

    model: torch.nn.Module
    teacher: torch.nn.Module
    loader: torch.utils.data.DataLoader
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype  # None: full precision
    args: dict
    device: torch.device
    logger: object
    last_save: float = field(default_factory=time.monotonic)
    bad_files: list = field(default_factory=list)  # training files found unreadable in this run, each once
    telemetry: Telemetry = field(default_factory=lambda: Telemetry(enabled=False))


class StopSignal:
    """Remembers a SIGTERM / SIGINT instead of dying: the loop finishes its step, saves and stops."""

    def __init__(self):
        self.received = None
        self.previous = {}

    def __enter__(self):
        for number in (signal.SIGTERM, signal.SIGINT):
            self.previous[number] = signal.signal(number, self.handle)
        return self

    def handle(self, number, frame):
        self.received = signal.Signals(number).name

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)


def gradient_norm(optimizer):
    grads = [p.grad for group in optimizer.param_groups for p in group['params'] if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads)


def train_epoch(job, epoch, state, stop, save_last):
    """Continues epoch `epoch` (1-based) from state.step to its end, updating state. Returns False
    when a stop signal ended it early (after save_last()), True at the epoch's end."""
    args, device = job.args, job.device
    job.model.train()
    method = METHODS[args['method']]
    sums = state.sums.to(device)
    reported = sums.clone()  # the sums at the last interval's report
    steps = state.step + len(job.loader)
    telemetry = job.telemetry
    telemetry.start_epoch()
    bar = progress_bar(
        telemetry.timed(job.loader),
        f'epoch {epoch}',
        distributed.is_main(),
        total=steps,
        initial=state.step,
        own_eta=not telemetry.enabled,
    )
    for clean, augmented, labels, bad in bar:
        telemetry.count(len(labels))
        clean, augmented = clean.to(device, non_blocking=True), augmented.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        buffers = [buffer.clone() for buffer in job.model.buffers()]  # BatchNorm statistics, put back on a skip
        with torch.autocast(device.type, dtype=job.amp_dtype, enabled=job.amp_dtype is not None):
            loss, values = method.step(job.model, job.teacher, clean, augmented, labels, epoch, args)
        job.optimizer.zero_grad(set_to_none=True)
        job.scaler.scale(loss).backward()
        job.scaler.unscale_(job.optimizer)
        save_due = distributed.is_main() and time.monotonic() - job.last_save >= args['checkpoint_minutes'] * 60
        flags = torch.stack(
            [
                ~torch.isfinite(values[2]),
                ~torch.isfinite(gradient_norm(job.optimizer)),
                torch.tensor(stop.received is not None, device=device),
                torch.tensor(save_due, device=device),
                torch.tensor(any(bad), device=device),
            ]
        )
        bad_loss, bad_grads, stopping, saving, bad_data = distributed.any_rank(flags).tolist()  # the step's one read
        state.step += 1
        skipped = bad_loss or bad_grads
        # with fp16 loss scaling, gradients that overflow while the loss is finite are the scaler's
        # business: scaler.step skips them itself and the scale is lowered (counted, not reported)
        overflow = bad_grads and not bad_loss and job.scaler.is_enabled()
        if skipped and not overflow:
            for buffer, saved in zip(job.model.buffers(), buffers):
                buffer.copy_(saved)
            job.logger.log_text(
                f'epoch {epoch} step {state.step}: non-finite loss or gradients, step skipped '
                f'({state.bad_in_row + 1} in a row)'
            )
        else:
            job.scaler.step(job.optimizer)
        if skipped:
            state.skipped += 1
            state.bad_in_row += 1
        else:
            sums += torch.cat([values.double(), values.new_ones(1, dtype=torch.float64)])
            state.bad_in_row = 0
        job.scaler.update()
        if state.step % args['log_interval'] == 0:
            report_interval(job, epoch, state.step, steps, sums, reported, bar)
        if bad_data:
            note_bad_files(job, epoch, state.step, bad, save_last, sums, state)
        diverged = state.bad_in_row > args['max_bad_steps']
        if diverged or stopping or saving:
            state.sums = sums.cpu()
            save_last()
        if diverged:
            raise TrainingDiverged(
                f'{state.bad_in_row} non-finite steps in a row (max_bad_steps='
                f'{args["max_bad_steps"]}) at epoch {epoch} step {state.step}; last.pt holds '
                f'the weights before them: lower lr or change amp, then resume=PATH'
            )
        if stopping:
            return False
    state.sums = sums.cpu()
    telemetry.flush()
    return True


def note_bad_files(job, epoch, step, bad, save_last, sums, state):
    """Names the training files that could not be read in this step on any rank (each was replaced
    by another item), and stops the run, saved, once the run has met more than max_bad_files."""
    met = distributed.gather_objects(TrainSet.bad_paths(bad))
    new = distributed.broadcast_object(
        None if met is None else sorted({path for paths in met for path in paths} - set(job.bad_files))
    )
    if not new:
        return
    job.bad_files.extend(new)
    limit = job.args['max_bad_files']
    job.logger.log_text(
        f'epoch {epoch} step {step}: skipped {len(new)} unreadable training file(s), another item '
        f'drawn in place of each ({len(job.bad_files)} in this run, max_bad_files={limit}): '
        f'{", ".join(new)}'
    )
    if len(job.bad_files) > limit:
        state.sums = sums.cpu()
        save_last()
        raise ValueError(
            f'path_train: {len(job.bad_files)} training files cannot be read (more than max_bad_files='
            f'{limit}), the first: {", ".join(job.bad_files[:3])}; the log names every one. Repair or '
            f'remove them (or raise max_bad_files), then resume=PATH of last.pt'
        )


def report_interval(job, epoch, step, steps, sums, reported, bar):
    """Once per log_interval steps, over the global batch (every rank takes this step at once): the
    epoch's running means as train/<loss> and in the bar and, read from the device at the same time,
    the interval's means (reported: the sums at the last report, brought up to date). Without
    telemetry the log gets the running means; with it, the interval's losses of the paths the method
    runs and its throughput, memory and time to finish, as metrics at the run's step number, and the
    same in one line of log.txt."""
    totals = distributed.sum_over_ranks(torch.stack([sums, sums - reported]))
    running, interval = (loss_means(row) for row in totals.cpu())
    reported.copy_(sums)
    at = global_step(epoch, step, steps)
    for name, value in running.items():
        job.logger.log_metric(f'train/{name}', value, at)
    postfix = dict(kd=f'{running["kd"]:.3f}', sv=f'{running["sv"]:.3f}', acc=f'{running["accuracy"]:.1f}')
    report = job.telemetry.interval(epoch, step, steps)
    if report is None:
        bar.set_postfix(postfix)
        job.logger.log_text(
            f'epoch {epoch} step {step}/{steps}: loss/kd {running["kd"]:.4f} loss/sv '
            f'{running["sv"]:.4f} accuracy {running["accuracy"]:.1f} % (running means)'
        )
        return
    bar.set_postfix(postfix, eta=format_duration(report.eta_epoch), run=format_duration(report.eta_run))
    health = health_metrics(interval, METHODS[job.args['method']].paths(epoch, job.args))
    for name, value in {**health, **report.metrics()}.items():
        job.logger.log_metric(name, value, at)
    job.logger.log_text(
        f'epoch {epoch} step {step}/{steps}: {health_text(health)} (last {report.steps} steps) | {report.text()}'
    )
    for warning in report.warnings:
        job.logger.log_text(warning)


def health_metrics(means, paths):
    """The interval's means of the paths a step ran: the KD loss as trained (x the epoch's weight)
    beside the plain MSE, whose trend stays visible as the weight falls to 0; the SV loss beside
    the accuracy of the plain cosines."""
    metrics = {}
    if 'kd' in paths:
        metrics.update({'health/kd_loss': means['kd'], 'health/kd_mse': means['kd_mse']})
    if 'sv' in paths:
        metrics.update({'health/sv_loss': means['sv'], 'health/accuracy': means['accuracy']})
    return metrics


def health_text(health):
    parts = []
    if 'health/kd_loss' in health:
        parts.append(f'kd {health["health/kd_loss"]:.4f} (mse {health["health/kd_mse"]:.4f})')
    if 'health/sv_loss' in health:
        parts.append(f'sv {health["health/sv_loss"]:.4f} accuracy {health["health/accuracy"]:.1f} %')
    return ' '.join(parts)
