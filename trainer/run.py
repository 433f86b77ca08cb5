"""A training run's state between epochs (epoch, best model, the epoch in progress) and its
checkpoints: what last.pt / best.pt hold, and how a resumed run takes it back."""

import os
import time

from trainer.loop import EpochState
from utils import distributed
from utils.checkpoint import gather_rng_states, load_checkpoint, set_rng_state
from utils.redact import without_secrets


class Run:
    """One training run's state between epochs, and its checkpoints. best.pt is written after
    last.pt, so a kill between them leaves a last.pt whose best epoch is the epoch it ends:
    resume then takes the best weights from last.pt itself."""

    def __init__(self, job, raw_model, num_classes, params=None):
        self.job = job
        self.raw_model = raw_model
        self.num_classes = num_classes
        self.params = params  # parameter counts (teacher, student, backend), for results.json
        self.epoch = 0  # epochs completed
        self.state = EpochState()  # the epoch in progress
        self.best = {'epoch': 0, 'eer': float('inf')}
        self.best_weights = None

    def checkpoint(self):
        """Every rank calls it (the random states of all ranks are gathered); rank 0's dict is the
        checkpoint, the others get None. Self-contained: the student's own SSL config (with its
        model type) and the run's settings rebuild the model without the teacher (inference.model),
        and 'best' carries the Vox1-O EER threshold of the best epoch (mode=verify decides with it)."""
        self.job.telemetry.flush()
        rng = gather_rng_states()
        if rng is None:
            return None
        return {
            'epoch': self.epoch,
            'step': self.state.step,
            'epoch_state': self.state.to_dict(),
            'model': self.raw_model.state_dict(),
            'optimizer': self.job.optimizer.state_dict(),
            'scaler': self.job.scaler.state_dict(),
            'best': dict(self.best),
            'metrics': list(self.job.logger.records),
            'rng': rng,
            'world_size': distributed.world_size(),
            'num_classes': self.num_classes,
            'args': without_secrets(self.job.args),
            'bad_files': list(self.job.bad_files),
            'telemetry': self.job.telemetry.state_dict(),
            'ssl_config': self.raw_model.student.ssl.config.to_dict(),
            'params': self.params,
        }

    def save(self, best_too=False):
        state = self.checkpoint()
        self.job.logger.save_checkpoint('last.pt', state)
        if best_too:
            self.job.logger.save_checkpoint('best.pt', state)
        self.job.last_save = time.monotonic()
        self.job.logger.log_text(
            f'saved last.pt{" and best.pt" if best_too else ""}: epoch {self.epoch} done, '
            f'{self.state.step} steps of the next'
        )

    def restore(self, saved, run_dir):
        """Continues from a checkpoint: weights, optimizer, loss scaler, counters, metrics, best
        model and this rank's random state."""
        self.raw_model.load_state_dict(saved['model'])
        self.job.optimizer.load_state_dict(saved['optimizer'])
        self.job.scaler.load_state_dict(saved['scaler'])
        self.epoch = saved['epoch']
        self.state = EpochState(**saved['epoch_state'])
        self.best = saved['best']
        self.job.bad_files[:] = saved.get('bad_files', [])
        self.job.telemetry.load_state_dict(saved.get('telemetry', {}))
        self.job.logger.restore_metrics(saved['metrics'])
        if self.best['epoch'] == self.epoch and self.state.step == 0:
            self.best_weights = saved['model']
        elif self.best['epoch'] > 0:
            best = load_checkpoint(os.path.join(run_dir, 'best.pt'), 'resume')
            if best['epoch'] != self.best['epoch']:
                raise ValueError(
                    f"resume: {run_dir}/best.pt holds epoch {best['epoch']}, the run's best "
                    f'is epoch {self.best["epoch"]}'
                )
            self.best_weights = best['model']
        rank, world = distributed.rank(), distributed.world_size()
        if saved['world_size'] == world:
            set_rng_state(saved['rng'][rank])
        else:
            self.job.logger.log_text(
                f'resumed on {world} processes, saved on {saved["world_size"]}: the data '
                f'order is the same, the random streams (dropout, masking) are new ones'
            )
        self.job.logger.log_text(
            f'resumed from epoch {self.epoch}, step {self.state.step} of the next; '
            f'best so far epoch {self.best["epoch"]}'
        )
