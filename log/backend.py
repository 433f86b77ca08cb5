"""What every logging backend (local files; later wandb, neptune) receives from the controller."""
from dataclasses import dataclass, field


@dataclass
class RunInfo:
    name: str
    project: str
    tags: list = field(default_factory=list)
    description: str = ''
    source_root: str = None     # copy the project's source from here; None: no copy


class LogBackend:
    """One place a run is recorded. The controller has already redacted parameters and printed text;
    a backend records what it can and leaves the rest as these no-ops."""
    run_dir = ''

    def log_parameter(self, params):
        pass

    def log_metric(self, name, value, step, at=None):
        """at: the time of the value (seconds since the epoch), now when None."""

    def restore_metrics(self, records):
        """A resumed run: the records its checkpoint holds are the run's metrics so far."""

    def log_text(self, text):
        pass

    def save_checkpoint(self, name, state):
        pass

    def save_scores(self, trial_list, enroll, test, labels, scores):
        pass

    def save_results(self, results):
        pass

    def finish(self):
        pass
