"""What a run keeps to be continued: its progress besides the weights (TrainState), the checkpoints
it writes (last.pt, best.pt, lmft.pt, with QMF's calibration where fitted) and how a resumed run takes
them back. trainer/train.py calls them; utils/checkpoint.py holds the file format."""

import os
from dataclasses import dataclass, field, replace

import torch

from trainer.methods import LOSS_NAMES
from trainer.parts import unwrap
from trainer.report import loss_means
from utils import distributed
from utils.checkpoint import gather_rng_states, load_checkpoint, save_checkpoint, set_rng_state, write_checkpoint
from utils.redact import without_secrets


def new_sums():
    return torch.zeros(len(LOSS_NAMES) + 1, dtype=torch.float64)  # LOSS_NAMES' sums, then the good steps


@dataclass
class TrainState:
    """Everything of the run's progress that a checkpoint saves besides the weights, the optimizer
    and the random states: a resumed run continues exactly from it."""

    epoch: int = 0  # epochs completed
    step: int = 0  # steps done in the epoch in progress
    sums: torch.Tensor = field(default_factory=new_sums)  # the epoch in progress, this rank's steps
    skipped: int = 0  # non-finite steps skipped in the epoch in progress
    bad_in_row: int = 0
    best: dict = field(default_factory=lambda: {'epoch': 0, 'eer': float('inf')})  # threshold: mode=verify's
    bad_files: list = field(default_factory=list)  # training files found unreadable in this run, each once
    lmft_best: dict = field(default_factory=lambda: {'epoch': 0, 'eer': float('inf')})  # LMFT's best, as best

    def means(self):
        return loss_means(self.sums)

    def next_epoch(self):
        """The epoch in progress is done: its counters start again."""
        self.epoch, self.step, self.sums, self.skipped, self.bad_in_row = self.epoch + 1, 0, new_sums(), 0, 0

    def to_checkpoint(self):
        return {
            'epoch': self.epoch,
            'step': self.step,
            'epoch_state': {'step': self.step, 'sums': self.sums.cpu(), 'skipped': self.skipped,
                            'bad_in_row': self.bad_in_row},
            'best': dict(self.best),
            'bad_files': list(self.bad_files),
            'lmft_best': dict(self.lmft_best),
        }  # fmt: skip

    @classmethod
    def from_checkpoint(cls, saved):
        epoch_state = saved['epoch_state']
        return cls(
            saved['epoch'],
            epoch_state['step'],
            epoch_state['sums'],
            epoch_state['skipped'],
            epoch_state['bad_in_row'],
            saved['best'],
            list(saved.get('bad_files', [])),
            saved.get('lmft_best', {'epoch': 0, 'eer': float('inf')}),
        )


def save(job, state, meta, also=None):
    """last.pt (and `also`: best.pt, or LMFT's lmft.pt) of the run as it stands, into the logger's run
    folder; every rank calls it (the random states of all ranks are gathered), rank 0 writes.
    Self-contained: the student's own SSL config and the run's settings rebuild the model without the
    teacher (inference.model), and its 'best' carries the EER threshold of the best epoch (mode=verify
    decides with it): in lmft.pt, LMFT's best epoch's."""
    job.telemetry.flush()
    rng = gather_rng_states()
    every_rank_sums = distributed.gather_objects(state.sums.cpu())
    model = unwrap(job.model)
    if rng is not None:
        for name in ('last.pt', also) if also else ('last.pt',):
            best = state.lmft_best if name == 'lmft.pt' else state.best
            # best.pt / lmft.pt hold their best epoch's weights: the epoch they name is that one (at the
            # run's end, after LMFT, best.pt is written again with the method's best weights)
            epoch = state.epoch if name == 'last.pt' else best['epoch'] or state.epoch
            save_checkpoint(
                os.path.join(job.logger.run_dir, name),
                replace(state, sums=torch.stack(every_rank_sums), best=best, epoch=epoch),  # sums: (world, sums)
                model,
                job.optimizer,
                job.scaler,
                rng,
                world_size=distributed.world_size(),
                args=without_secrets(job.args),
                telemetry=job.telemetry.state_dict(),
                ssl_config=model.student.ssl.config.to_dict(),
                **meta,
            )
    job.logger.log_text(
        f'saved last.pt{f" and {also}" if also else ""}: epoch {state.epoch} done, {state.step} steps of the next'
    )


def restore(job, saved, run_dir):
    """A resumed run's TrainState and best weights of the method's stages and of LMFT's (each None
    before its first best epoch) from its last.pt: weights, optimizer, loss scaler, telemetry and this
    rank's random state put back."""
    unwrap(job.model).load_state_dict(saved['model'])
    job.optimizer.load_state_dict(saved['optimizer'])
    job.scaler.load_state_dict(saved['scaler'])
    job.telemetry.load_state_dict(saved.get('telemetry', {}))
    state = TrainState.from_checkpoint(saved)
    best_weights = kept_weights(saved, state, state.best, os.path.join(run_dir, 'best.pt'))
    lmft_weights = kept_weights(saved, state, state.lmft_best, os.path.join(run_dir, 'lmft.pt'))
    rank, world = distributed.rank(), distributed.world_size()
    state.sums = own_sums(state.sums, rank, saved['world_size'] == world)
    if saved['world_size'] == world:
        set_rng_state(saved['rng'][rank])
    else:
        job.logger.log_text(
            f'resumed on {world} processes, saved on {saved["world_size"]}: the data '
            f'order is the same, the random streams (dropout, masking) are new ones'
        )
    job.logger.log_text(
        f'resumed from epoch {state.epoch}, step {state.step} of the next; best so far epoch {state.best["epoch"]}'
    )
    return state, best_weights, lmft_weights


def kept_weights(saved, state, best, path):
    """The weights of the best epoch `best` (None before one): best.pt or lmft.pt, written after
    last.pt, so a kill between them leaves a last.pt whose best epoch is the epoch it ends: they are
    then last.pt's own."""
    if best['epoch'] == state.epoch and state.step == 0:
        return saved['model']
    if best['epoch'] == 0:
        return None
    kept = load_checkpoint(path, 'resume')
    if kept['epoch'] != best['epoch']:
        raise ValueError(f"resume: {path} holds epoch {kept['epoch']}, the run's best is epoch {best['epoch']}")
    return kept['model']


def own_sums(saved, rank, same_world):
    """This rank's loss sums of the epoch in progress, from the checkpoint's sums of every rank
    (world, sums): its own row in a job of the saved size, else rank 0 takes their total (so the
    epoch's means count every step). A checkpoint of an earlier version holds rank 0's row alone."""
    rows = saved[None] if saved.dim() == 1 else saved
    if same_world and rank < len(rows):
        return rows[rank].clone()
    return rows.sum(0) if rank == 0 else torch.zeros_like(rows[0])


def save_calibration(logger, calibration, epoch, own):
    """QMF's calibration, fitted on the weights of `epoch`, as the 'qmf' entry of the checkpoint
    `own` that holds those weights (best.pt: the method's best; lmft.pt: LMFT's), and of last.pt
    when it holds them too (its epoch that one, at its end): mode=verify calibrates with it (rank 0,
    which alone has it, writes)."""
    for name in (own, 'last.pt'):
        path = os.path.join(logger.run_dir, name)
        if not os.path.isfile(path):
            continue
        saved = load_checkpoint(path)
        if name == own or (saved['epoch'] == epoch and saved.get('step', 0) == 0):
            write_checkpoint(path, {**saved, 'qmf': calibration})
            logger.log_text(f'QMF calibration saved in {name}')


def copy_weights(model):
    """The model's weights as they stand, copied to the CPU: a best model kept while training goes on."""
    return {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}
