"""What a training run says about itself while it runs: the running and interval means of the
losses, the health metrics of the paths a step runs, each epoch's losses and LRs, and the command
that continues a stopped run. trainer/train.py calls them."""

import os

import torch

from trainer.methods import LOSS_NAMES
from utils import distributed
from utils.progress import format_duration


def loss_means(sums):
    """{loss name: mean over the good steps}; sums holds LOSS_NAMES' sums, then the count (read from the device)."""
    values = sums.tolist()
    return {name: values[i] / max(values[-1], 1) for i, name in enumerate(LOSS_NAMES)}


def report_interval(job, paths, epoch, step, steps, sums, reported, bar):
    """Once per log_interval steps, over the global batch (every rank takes this step at once): the
    epoch's running means as train/<loss> and in the bar and, read from the device at the same time,
    the interval's means (reported: the sums at the last report, brought up to date). Without
    telemetry the log gets the running means; with it, the interval's losses of the paths the step
    runs and its throughput, memory and time to finish, as metrics at the run's step number, and the
    same in one line of log.txt."""
    totals = distributed.sum_over_ranks(torch.stack([sums, sums - reported]))
    running, interval = (loss_means(row) for row in totals.cpu())
    reported.copy_(sums)
    at = job.steps_before + step  # optimizer steps since the run began: the step of these metrics
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
    health = health_metrics(interval, paths)
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


def log_training(logger, epoch, lrs, losses, prefix=''):
    for name, value in lrs.items():
        logger.log_metric(f'{prefix}lr/{name}', value, epoch)
    for name in ('kd', 'sv', 'total'):
        logger.log_metric(f'{prefix}loss/{name}', losses[name], epoch)
    logger.log_text(
        f'epoch {epoch}: loss/kd {losses["kd"]:.4f} loss/sv {losses["sv"]:.4f} accuracy {losses["accuracy"]:.1f} %'
    )


def stopped(logger, stop, epoch, step):
    logger.log_text(
        f'{stop.received}: stopped after epoch {epoch} and {step} steps of the next; last.pt saved. '
        f'Continue with: {continue_command(os.path.join(logger.run_dir, "last.pt"))}'
    )
    return None


def continue_command(last):
    """The command line that continues this job from `last`, started the way this one was."""
    if 'TORCHELASTIC_RUN_ID' not in os.environ:
        return f'python main.py resume={last}'
    machines, per_machine = distributed.machines(), distributed.local_world_size()
    if machines == 1:
        return f'torchrun --nproc_per_node={per_machine} main.py resume={last}'
    return (
        f'torchrun --nnodes={machines} --nproc_per_node={per_machine} --rdzv_backend=c10d '
        f'--rdzv_endpoint=HOST:PORT main.py resume={last} (on each of the {machines} machines)'
    )
