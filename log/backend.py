"""What every logging backend (local files, TensorBoard, wandb, neptune) receives from the controller."""

import json
import os
from dataclasses import dataclass, field

# Metrics logged every log_interval steps are stepped by the global step (optimizer steps since the
# run began); every other metric by the epoch (0: before training).
GLOBAL_STEP_PREFIXES = ('train/', 'perf/', 'health/')


def step_axis(name):
    """'global_step' or 'epoch': what the step of metric `name` counts."""
    return 'global_step' if name.startswith(GLOBAL_STEP_PREFIXES) else 'epoch'


@dataclass
class RunInfo:
    name: str
    project: str
    tags: list = field(default_factory=list)
    description: str = ''
    source_root: str = None  # copy the project's source from here; None: no copy
    run_dir: str = ''  # the local run folder, once the local backend has made it
    secrets: tuple = ()  # secret values to keep out of every file and text

    @property
    def label(self):
        """The run's name at a tracker: its folder's (name-date-time, unique), else its name."""
        return os.path.basename(self.run_dir) or self.name


class LogBackend:
    """One place a run is recorded. The controller has already redacted parameters and text; a
    backend records what it can and leaves the rest as these no-ops.

    A backend that is not `essential` (a tracker) is warned about and switched off when one of its
    calls raises; an essential one's error (the local files) is the run's error."""

    name = ''
    essential = False
    run_dir = ''

    def log_parameter(self, params):
        pass

    def log_metric(self, name, value, step, at=None):
        """at: the time of the value (seconds since the epoch), now when None."""

    def log_text(self, text):
        pass

    def save_file(self, path, name):
        """A file of the run folder (a plot, results.md, log.txt, best.pt); name: its path in the folder."""

    def save_scores(self, trial_list, enroll, test, labels, scores):
        pass

    def save_results(self, results):
        pass

    def finish(self, failed=False):
        pass


def tracker_run_id(run, tracker, new_id):
    """This run's id at a tracker, kept in <run folder>/trackers.json, so a resumed run goes on in
    the same tracked run; new_id() makes one the first time."""
    if not run.run_dir:
        return new_id()
    path = os.path.join(run.run_dir, 'trackers.json')
    ids = {}
    if os.path.isfile(path):
        with open(path, encoding='utf-8') as file:
            ids = json.load(file)
    if tracker not in ids:
        ids[tracker] = new_id()
        with open(path, 'w', encoding='utf-8') as file:
            json.dump(ids, file, indent=2)
    return ids[tracker]
