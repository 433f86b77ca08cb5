"""TensorBoard: the metrics as scalars (each on its own step: epoch or global step), the run's
description, tags and parameters as text, in event files read by `tensorboard --logdir`."""

import json
import os

from log.backend import LogBackend


def markdown_table(params):
    """Parameters as a two-column markdown table (TensorBoard's text tab renders it)."""
    lines = ['| parameter | value |', '|---|---|']
    lines += [f'| {key} | `{json.dumps(value, default=str)}` |' for key, value in params.items()]
    return '\n'.join(lines)


class TensorBoardBackend(LogBackend):
    name = 'tensorboard'

    def __init__(self, path, run):
        """Event files in path; None: <run folder>/tensorboard (a resumed run adds a file beside the first)."""
        from torch.utils.tensorboard import SummaryWriter  # imported here: a run without TensorBoard skips its 2 s

        self.writer = SummaryWriter(path or os.path.join(run.run_dir, 'tensorboard'))
        self.writer.add_text('run', f'**{run.name}** ({run.project}): {run.description}\n\ntags: {", ".join(run.tags)}')

    def log_parameter(self, params):
        self.writer.add_text('parameters', markdown_table(params))

    def log_metric(self, name, value, step, at=None):
        self.writer.add_scalar(name, value, step, walltime=at)

    def finish(self, failed=False):
        self.writer.close()
