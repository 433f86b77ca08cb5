"""neptune.ai: metrics as series (step: epoch or global step), parameters under `parameters/`, name,
tags and description, and the run folder's plots, results.md, log.txt and (log_checkpoints) best.pt
as files under their names in the run folder.

Offline (neptune_mode=offline or NEPTUNE_MODE=offline) the run is kept under .neptune/ (in the
working folder, or NEPTUNE_DATA_DIRECTORY) for `neptune sync`."""

import uuid

from log.backend import LogBackend, tracker_run_id


class NeptuneBackend(LogBackend):
    name = 'neptune'

    def __init__(self, user, token, project, mode, run):
        """user: the workspace; token: None reads NEPTUNE_API_TOKEN; project: None takes the run's;
        mode: async, sync, offline, debug, read-only; None reads NEPTUNE_MODE (else async)."""
        import neptune  # imported here: a run without neptune does not load it (2 s)
        from neptune.utils import stringify_unsupported

        self.stringify = stringify_unsupported
        self.run = neptune.init_run(
            project=f'{user}/{project or run.project}',
            api_token=token or None,
            mode=mode,
            name=run.label,
            description=run.description,
            tags=run.tags,
            custom_run_id=tracker_run_id(run, self.name, lambda: str(uuid.uuid4())),
            capture_stdout=False,  # log.txt is saved instead, redacted
            capture_stderr=False,
            source_files=[],  # the run folder keeps the source, redacted
            git_ref=False,
        )

    def log_parameter(self, params):
        self.run['parameters'] = self.stringify(params)  # None and tuples as text: neptune takes neither

    def log_metric(self, name, value, step, at=None):
        self.run[name].append(value, step=step, timestamp=at)

    def save_file(self, path, name):
        self.run[name].upload(path)

    def finish(self, failed=False):
        if failed:
            self.run['sys/failed'] = True
        self.run.stop()
