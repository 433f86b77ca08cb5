"""Weights & Biases: metrics (each plotted against its own step, epoch or global step), parameters
as the run's config, name, tags and description, and the run folder's plots, results.md, log.txt and
(log_checkpoints) best.pt.

Offline (wandb_mode=offline or WANDB_MODE=offline) the run is kept in wandb's folder (WANDB_DIR, else
./wandb) for `wandb sync`."""

import os
import uuid

from log.backend import LogBackend, step_axis, tracker_run_id


class WandbBackend(LogBackend):
    name = 'wandb'

    def __init__(self, user, token, project, mode, run):
        """user: the entity (user or team); token: None reads WANDB_API_KEY; project: None takes the
        run's; mode: online or offline, None reads WANDB_MODE (else online)."""
        import wandb  # imported here: a run without wandb does not load it

        self.wandb = wandb
        settings = wandb.Settings(
            api_key=token or None,
            console='off',  # log.txt is saved instead, redacted
            x_disable_meta=True,  # the metadata holds sys.argv, where a token given as key=value stands
            disable_git=True,
            save_code=False,  # the run folder keeps the source, redacted
        )
        self.run = wandb.init(
            entity=user,
            project=project or run.project,
            name=run.label,
            notes=run.description,
            tags=run.tags,
            mode=mode,
            dir=os.environ.get('WANDB_DIR'),  # read at every start: wandb keeps the first one of a process
            id=tracker_run_id(run, self.name, lambda: uuid.uuid4().hex[:12]),
            resume='allow',
            settings=settings,
        )
        for axis in ('epoch', 'global_step'):
            self.run.define_metric(axis)
        self.defined = set()  # metrics told their step axis (wandb's glob '*' would take in the axes themselves)

    def log_parameter(self, params):
        self.run.config.update(params, allow_val_change=True)

    def log_metric(self, name, value, step, at=None):
        axis = step_axis(name)
        if name not in self.defined:
            self.run.define_metric(name, step_metric=axis)
            self.defined.add(name)
        self.run.log({name: value, axis: step})

    def save_file(self, path, name):
        if name.endswith('.pt'):
            artifact = self.wandb.Artifact(f'{self.run.id}-{os.path.splitext(name)[0]}', type='model')
            artifact.add_file(path, name=name)
            self.run.log_artifact(artifact)
        else:
            # policy='live': a plot redrawn each epoch is sent again when it changes
            self.run.save(path, base_path=path[: -len(name)] or '.', policy='live')

    def finish(self, failed=False):
        self.run.finish(exit_code=1 if failed else 0)
