"""The local backend: everything of a run as plain files in one run folder.

    <path_log>/<project>/<name>-<YYYYmmdd-HHMMSS>[-2, -3, ...]/
        run.json  parameters.json  metrics.jsonl  log.txt  results.json  results.md  last.pt  best.pt
        source/   scores/<trial list>.txt

(The controller draws plots/ into the same folder; TensorBoard writes tensorboard/.)
"""

import glob
import itertools
import json
import os
import re
import time

import numpy as np
import torch

from log.backend import LogBackend
from log.report import results_markdown
from log.source import copy_source_files
from utils.checkpoint import write_atomic


def create_run_dir(path_log, project, name):
    """A new run folder path_log/<project>/<name>-<date-time>, with -2, -3, ... when taken; never
    reuses one."""
    parent = os.path.join(path_log, project)
    os.makedirs(parent, exist_ok=True)
    base = os.path.join(parent, f'{name}-{time.strftime("%Y%m%d-%H%M%S")}')
    for number in itertools.count(1):
        path = base if number == 1 else f'{base}-{number}'
        try:
            os.mkdir(path)  # atomic: two runs starting together cannot get the same folder
            return path
        except FileExistsError:
            continue


def run_folders(path_log, project, name):
    """The run folders create_run_dir made for this project and name (not those of a name that
    merely starts with it: 'oskdft' is not 'oskdft-vox2')."""
    own = re.compile(re.escape(name) + r'-\d{8}-\d{6}(-\d+)?')
    parent = os.path.join(path_log, project)
    found = glob.glob(os.path.join(parent, glob.escape(name) + '-*'))
    return sorted(path for path in found if own.fullmatch(os.path.basename(path)) and os.path.isdir(path))


def to_json(value):
    """json's fallback for numpy and torch values."""
    if isinstance(value, (np.generic, np.ndarray, torch.Tensor)):
        return value.tolist()
    return str(value)


def read_metrics(path):
    """The metric records of a metrics.jsonl ({name, value, step, time} each), [] before any."""
    if not os.path.isfile(path):
        return []
    with open(path, encoding='utf-8') as file:
        return [json.loads(line) for line in file if line.strip()]


def read_scores(path):
    """A scores file as save_scores writes it (label enroll test score a line): (labels (M,),
    enroll paths [M], test paths [M], scores (M,))."""
    with open(path, encoding='utf-8') as file:
        rows = [line.split() for line in file if line.strip()]
    labels = np.array([int(row[0]) for row in rows], dtype=np.int64)
    return labels, [row[1] for row in rows], [row[2] for row in rows], np.array([float(row[3]) for row in rows])


def write_json(path, data):
    write_atomic(path, lambda file: json.dump(data, file, indent=2, default=to_json), mode='w')


class LocalBackend(LogBackend):
    name = 'local'
    essential = True  # the run's own record: failing to write it is the run's error

    def __init__(self, path_log, run, run_dir=None, metrics_until=None):
        """A new run folder under path_log, or, with run_dir, the existing folder of a run being
        resumed: its files are appended to, nothing in it is replaced but metrics.jsonl, which keeps
        the records logged up to metrics_until (the time its checkpoint was saved: the resumed run
        logs the later ones again)."""
        if run_dir:
            self.run_dir = os.path.abspath(run_dir)
            print(f'run folder (resumed): {self.run_dir}', flush=True)
        else:
            self.run_dir = os.path.abspath(create_run_dir(path_log, run.project, run.name))
            print(f'run folder: {self.run_dir}', flush=True)
            write_json(
                os.path.join(self.run_dir, 'run.json'),
                {
                    'name': run.name,
                    'project': run.project,
                    'tags': run.tags,
                    'description': run.description,
                    'start': time.strftime('%Y-%m-%d %H:%M:%S'),
                },
            )
            if run.source_root:
                copy_source_files(
                    run.source_root, os.path.join(self.run_dir, 'source'), skip=[path_log], secrets=run.secrets
                )
        self.parameters = {}
        if run_dir and metrics_until is not None:
            kept = [record for record in read_metrics(self.path('metrics.jsonl')) if record['time'] <= metrics_until]
            write_atomic(
                self.path('metrics.jsonl'), lambda file: file.writelines(json.dumps(r) + '\n' for r in kept), mode='w'
            )
        self.metrics_file = open(self.path('metrics.jsonl'), 'a', encoding='utf-8')
        self.text_file = open(self.path('log.txt'), 'a', encoding='utf-8')

    def path(self, *parts):
        """A path in the run folder, its sub-folder created."""
        path = os.path.join(self.run_dir, *parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def log_parameter(self, params):
        self.parameters.update(params)
        write_json(self.path('parameters.json'), self.parameters)

    def log_metric(self, name, value, step, at=None):
        record = {'name': name, 'value': float(value), 'step': step, 'time': at or time.time()}
        self.metrics_file.write(json.dumps(record) + '\n')
        self.metrics_file.flush()

    def log_text(self, text):
        self.text_file.write(f'{time.strftime("%Y-%m-%d %H:%M:%S")} {text}\n')
        self.text_file.flush()

    def save_scores(self, trial_list, enroll, test, labels, scores):
        labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
        lines = ''.join(
            f'{int(label)} {e} {t} {score:.8f}\n' for label, e, t, score in zip(labels, enroll, test, scores)
        )
        write_atomic(self.path('scores', f'{trial_list}.txt'), lambda file: file.write(lines), mode='w')

    def save_results(self, results):
        write_json(self.path('results.json'), results)
        text = results_markdown(results, self.parameters)
        write_atomic(self.path('results.md'), lambda file: file.write(text), mode='w')

    def finish(self, failed=False):
        for file in (self.metrics_file, self.text_file):
            if not file.closed:
                file.close()
