"""One logger for the whole run, recording into every backend the builder was given.

    logger = (LogModuleController.Builder(name, project)
              .tags(['oskdft']).description('...')
              .save_source_files(project_root)
              .use_local(path_log)              # the run folder: always first, the others use it
              .use_tensorboard()                # None: <run folder>/tensorboard
              .use_wandb(user, token)           # token None: WANDB_API_KEY
              .use_neptune(user, token)         # token None: NEPTUNE_API_TOKEN
              .log_checkpoints(True)            # best.pt sent to the trackers at the end
              .build(rank=0))                   # any other rank: no backends, every call a no-op

The local backend is the run's own record: its errors are the run's errors. Any other backend (a
tracker) that fails to start or to send is warned about once and switched off; training and the
local record go on. Every text, parameter and file is redacted of the run's secrets (the tokens given
and every secret-looking environment variable) before any backend sees it.

A new backend is one LogBackend subclass in its own file and one `use_...` method of the Builder
(over `use_backend`).
"""

import os
import re
import time
from functools import partial

from log.backend import RunInfo
from log.local import LocalBackend, read_metrics
from log.neptune_backend import NeptuneBackend
from log.plots import draw_epoch_plots, draw_score_plots
from log.tensorboard_backend import TensorBoardBackend
from log.wandb_backend import WandbBackend
from utils.redact import redact_parameters, redact_text, secret_values


def describe(error):
    """One line for an error: its type and the first line of its message, terminal colours removed
    (the libraries' messages span screens)."""
    lines = [line.strip() for line in re.sub(r'\x1b\[[0-9;]*m', '', str(error)).splitlines()]
    first = next((line for line in lines if line and not line.startswith('---')), '')
    return f'{type(error).__name__}: {first}' if first else type(error).__name__


class LogModuleController:
    def __init__(self, backends, enabled=True, secrets=(), log_checkpoints=False):
        self.backends = backends
        self.enabled = enabled
        self.secrets = secrets
        self.log_checkpoints = log_checkpoints

    @property
    def run_dir(self):
        """The local run folder ('' when there is none, e.g. on ranks other than 0)."""
        return next((backend.run_dir for backend in self.backends if backend.run_dir), '')

    def call(self, method, *args):
        """backend.method(*args) on every backend; a tracker that raises is switched off."""
        for backend in list(self.backends):
            self.call_one(backend, method, *args)

    def call_one(self, backend, method, *args):
        try:
            getattr(backend, method)(*args)
        except Exception as error:
            if backend.essential:
                raise
            self.switch_off(backend, f'failed in {method}', error)

    def start(self, name, make, run):
        """Adds the tracker make(run) returns; one that fails to start is warned about and left out."""
        try:
            self.backends.append(make(run))
        except Exception as error:
            self.warn(name, 'could not start', error)

    def switch_off(self, backend, what, error):
        self.backends.remove(backend)
        try:
            backend.finish(failed=True)
        except Exception:
            pass  # it has failed once already; its closing error says nothing more
        self.warn(backend.name, what, error)

    def warn(self, name, what, error):
        self.log_text(
            f'warning: {name} {what} ({describe(error)}); it is switched off for this run, training '
            f'and the local record go on'
        )

    def log_parameter(self, params):
        self.call('log_parameter', redact_parameters(params, self.secrets))

    def log_metric(self, name, value, step):
        if not self.enabled:
            return
        self.call('log_metric', name, float(value), step, time.time())

    def end_epoch(self):
        """Once an epoch, after its metrics: the curves redrawn into the run folder and sent on."""
        if self.run_dir:
            records = read_metrics(os.path.join(self.run_dir, 'metrics.jsonl'))
            for path in draw_epoch_plots(records, os.path.join(self.run_dir, 'plots')):
                self.save_file(path)

    def save_file(self, path):
        """A file of the run folder sent to every tracker, under its path in the folder."""
        self.call('save_file', path, os.path.relpath(path, self.run_dir))

    def log_text(self, text):
        text = redact_text(text, self.secrets)
        if self.enabled:
            print(text, flush=True)
        self.call('log_text', text)

    def save_scores(self, trial_list, enroll, test, labels, scores):
        """The scores file, and the DET curve and score histograms of the list."""
        self.call('save_scores', trial_list, enroll, test, labels, scores)
        if self.run_dir:
            for path in draw_score_plots(os.path.join(self.run_dir, 'plots'), trial_list, labels, scores):
                self.save_file(path)

    def save_results(self, results):
        self.call('save_results', results)
        if self.run_dir and os.path.isfile(os.path.join(self.run_dir, 'results.md')):
            self.save_file(os.path.join(self.run_dir, 'results.md'))

    def finish(self, failed=False):
        """Sends log.txt (and best.pt with log_checkpoints) to the trackers, then closes every
        backend, the local one last (a tracker's closing warning still reaches log.txt)."""
        if self.run_dir:
            for name in ['log.txt'] + (['best.pt'] if self.log_checkpoints else []):
                if os.path.isfile(os.path.join(self.run_dir, name)):
                    self.save_file(os.path.join(self.run_dir, name))
        run_dir = self.run_dir
        for backend in reversed(list(self.backends)):
            self.call_one(backend, 'finish', failed)
        if run_dir:
            print(f'run folder: {run_dir}', flush=True)

    class Builder:
        def __init__(self, name, project):
            self.run = RunInfo(name, project)
            self.local = None  # RunInfo -> LocalBackend
            self.trackers = []  # (name, RunInfo -> LogBackend), started once the run folder exists
            self.tokens = []
            self.send_checkpoints = False

        def tags(self, tags):
            self.run.tags = list(tags)
            return self

        def description(self, text):
            self.run.description = text
            return self

        def save_source_files(self, root):
            self.run.source_root = root
            return self

        def use_local(self, path_log, run_dir=None, metrics_until=None):
            """Files in a new run folder under path_log, or in run_dir when a run is resumed from a
            checkpoint saved at time metrics_until (the metrics logged after it are dropped)."""
            self.local = partial(LocalBackend, path_log, run_dir=run_dir, metrics_until=metrics_until)
            return self

        def use_backend(self, name, make, tokens=()):
            """Any tracker: make(RunInfo) -> LogBackend, called once the run folder exists; tokens:
            the secrets it was given, kept out of every text and file of the run."""
            self.trackers.append((name, make))
            self.tokens.extend(tokens)
            return self

        def use_tensorboard(self, path=None):
            """Event files in path; None: <run folder>/tensorboard."""
            return self.use_backend('tensorboard', partial(TensorBoardBackend, path))

        def use_wandb(self, user, token=None, project=None, mode=None):
            """user: the wandb entity; token None: WANDB_API_KEY; project None: the run's; mode:
            online or offline, None: WANDB_MODE."""
            return self.use_backend('wandb', partial(WandbBackend, user, token, project, mode), [token])

        def use_neptune(self, user, token=None, project=None, mode=None):
            """user: the neptune workspace; token None: NEPTUNE_API_TOKEN; project None: the run's;
            mode: async, offline, ..., None: NEPTUNE_MODE."""
            return self.use_backend('neptune', partial(NeptuneBackend, user, token, project, mode), [token])

        def log_checkpoints(self, send=True):
            """best.pt sent to the trackers (as a wandb artifact, a neptune file) when the run ends."""
            self.send_checkpoints = send
            return self

        def build(self, rank=0):
            """Rank 0 gets every backend, the local one first; other ranks a controller that does nothing."""
            if rank != 0:
                return LogModuleController([], enabled=False)
            secrets = secret_values(self.tokens)
            self.run.secrets = secrets
            self.run.description = redact_text(self.run.description, secrets)
            self.run.tags = [redact_text(tag, secrets) for tag in self.run.tags]
            backends = [self.local(self.run)] if self.local else []
            self.run.run_dir = backends[0].run_dir if backends else ''
            controller = LogModuleController(backends, secrets=secrets, log_checkpoints=self.send_checkpoints)
            for name, make in self.trackers:
                controller.start(name, make, self.run)
            return controller
