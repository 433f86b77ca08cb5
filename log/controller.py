"""One logger for the whole run, recording into every backend the builder was given.

    logger = (LogModuleController.Builder(name, project)
              .tags(['oskdft']).description('...')
              .save_source_files(project_root)
              .use_local(path_log)
              .build(rank=0))       # any other rank: no backends, every call a no-op

A new backend (wandb, neptune) is one LogBackend subclass and one `use_...` method of the Builder.
"""
import time
from functools import partial

from log.backend import RunInfo
from log.local import LocalBackend
from log.redact import redact_parameters


class LogModuleController:
    def __init__(self, backends, enabled=True):
        self.backends = backends
        self.enabled = enabled
        self.records = []       # every metric logged: a checkpoint carries them, a resume restores them

    @property
    def run_dir(self):
        """The local run folder ('' when there is none, e.g. on ranks other than 0)."""
        return next((backend.run_dir for backend in self.backends if backend.run_dir), '')

    def log_parameter(self, params):
        params = redact_parameters(params)
        for backend in self.backends:
            backend.log_parameter(params)

    def log_metric(self, name, value, step):
        if not self.enabled:
            return
        record = {'name': name, 'value': float(value), 'step': step, 'time': time.time()}
        self.records.append(record)
        for backend in self.backends:
            backend.log_metric(name, record['value'], step, at=record['time'])

    def restore_metrics(self, records):
        self.records = [dict(record) for record in records] if self.enabled else []
        for backend in self.backends:
            backend.restore_metrics(self.records)

    def log_text(self, text):
        if self.enabled:
            print(text, flush=True)
        for backend in self.backends:
            backend.log_text(text)

    def save_checkpoint(self, name, state):
        for backend in self.backends:
            backend.save_checkpoint(name, state)

    def save_scores(self, trial_list, enroll, test, labels, scores):
        for backend in self.backends:
            backend.save_scores(trial_list, enroll, test, labels, scores)

    def save_results(self, results):
        for backend in self.backends:
            backend.save_results(results)

    def finish(self):
        for backend in self.backends:
            backend.finish()
        if self.run_dir:
            print(f'run folder: {self.run_dir}', flush=True)

    class Builder:
        def __init__(self, name, project):
            self.run = RunInfo(name, project)
            self.backend_makers = []        # each: RunInfo -> LogBackend, called in build()

        def tags(self, tags):
            self.run.tags = list(tags)
            return self

        def description(self, text):
            self.run.description = text
            return self

        def save_source_files(self, root):
            self.run.source_root = root
            return self

        def use_local(self, path_log, run_dir=None):
            """Files in a new run folder under path_log, or in run_dir when a run is resumed."""
            self.backend_makers.append(partial(LocalBackend, path_log, run_dir=run_dir))
            return self

        def build(self, rank=0):
            """Rank 0 gets every backend; other ranks a controller that does nothing."""
            if rank != 0:
                return LogModuleController([], enabled=False)
            return LogModuleController([make(self.run) for make in self.backend_makers])
