"""The local backend: everything of a run as plain files in one run folder.

    <path_log>/<project>/<name>-<YYYYmmdd-HHMMSS>[-2, -3, ...]/
        run.json  parameters.json  metrics.jsonl  log.txt  results.json  last.pt  best.pt
        source/   scores/<trial list>.txt   plots/loss.png  plots/eer.png  plots/det_<trial list>.png
"""
import itertools
import json
import os
import time
from collections import defaultdict

import numpy as np
import torch

from log.backend import LogBackend
from log.plots import plot_curves, plot_det
from log.source import copy_source_files
from utils.checkpoint import save_checkpoint, write_atomic
from utils.metrics import compute_eer, det_curve


def create_run_dir(parent, name):
    """A new folder parent/<name>-<date-time>, with -2, -3, ... when taken; never reuses one."""
    os.makedirs(parent, exist_ok=True)
    base = os.path.join(parent, f'{name}-{time.strftime("%Y%m%d-%H%M%S")}')
    for number in itertools.count(1):
        path = base if number == 1 else f'{base}-{number}'
        try:
            os.mkdir(path)      # atomic: two runs starting together cannot get the same folder
            return path
        except FileExistsError:
            continue


def to_json(value):
    """json's fallback for numpy and torch values."""
    if isinstance(value, (np.generic, np.ndarray, torch.Tensor)):
        return value.tolist()
    return str(value)


def write_json(path, data):
    write_atomic(path, lambda file: json.dump(data, file, indent=2, default=to_json), mode='w')


class LocalBackend(LogBackend):
    def __init__(self, path_log, run, run_dir=None):
        """A new run folder under path_log, or, with run_dir, the existing folder of a run being
        resumed: its files are appended to, nothing in it is replaced."""
        if run_dir:
            self.run_dir = os.path.abspath(run_dir)
            print(f'run folder (resumed): {self.run_dir}', flush=True)
        else:
            self.run_dir = os.path.abspath(create_run_dir(os.path.join(path_log, run.project), run.name))
            print(f'run folder: {self.run_dir}', flush=True)
            write_json(os.path.join(self.run_dir, 'run.json'),
                       {'name': run.name, 'project': run.project, 'tags': run.tags,
                        'description': run.description, 'start': time.strftime('%Y-%m-%d %H:%M:%S')})
            if run.source_root:
                copy_source_files(run.source_root, os.path.join(self.run_dir, 'source'), skip=[path_log])
        self.parameters = {}
        self.history = defaultdict(list)        # metric name -> [(step, value)]
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
        self.write_metric({'name': name, 'value': float(value), 'step': step, 'time': at or time.time()})
        self.redraw_plots(name)

    def write_metric(self, record):
        self.metrics_file.write(json.dumps(record) + '\n')
        self.metrics_file.flush()
        self.history[record['name']].append((record['step'], record['value']))

    def restore_metrics(self, records):
        """metrics.jsonl rewritten to hold exactly these records (those a resumed checkpoint had
        logged: lines written after it are dropped, as the resumed run logs them again)."""
        self.metrics_file.close()
        write_atomic(self.path('metrics.jsonl'), lambda file: file.writelines(json.dumps(r) + '\n' for r in records),
                     mode='w')
        self.metrics_file = open(self.path('metrics.jsonl'), 'a', encoding='utf-8')
        self.history.clear()
        for record in records:
            self.history[record['name']].append((record['step'], record['value']))
        for name in {record['name'] for record in records}:
            self.redraw_plots(name)

    def redraw_plots(self, name):
        if name.startswith('loss/'):
            self.redraw('loss.png', 'loss', lambda key: key.startswith('loss/'))
        elif name.startswith('eval/') and name.endswith('/eer'):
            self.redraw('eer.png', 'EER (%)', lambda key: key.startswith('eval/') and key.endswith('/eer'))

    def redraw(self, file_name, ylabel, selects):
        series = {name.split('/')[1]: points for name, points in self.history.items() if selects(name)}
        write_atomic(self.path('plots', file_name), lambda file: plot_curves(file, series, ylabel, ylabel))

    def log_text(self, text):
        self.text_file.write(f'{time.strftime("%Y-%m-%d %H:%M:%S")} {text}\n')
        self.text_file.flush()

    def save_checkpoint(self, name, state):
        save_checkpoint(self.path(name), state)

    def save_scores(self, trial_list, enroll, test, labels, scores):
        labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
        lines = ''.join(f'{int(label)} {e} {t} {score:.8f}\n'
                        for label, e, t, score in zip(labels, enroll, test, scores))
        write_atomic(self.path('scores', f'{trial_list}.txt'), lambda file: file.write(lines), mode='w')
        p_fa, p_miss = det_curve(scores, labels)
        eer = compute_eer(scores, labels)
        write_atomic(self.path('plots', f'det_{trial_list}.png'),
                     lambda file: plot_det(file, p_fa, p_miss, eer, f'{trial_list} ({len(scores):,} trials)'))

    def save_results(self, results):
        write_json(self.path('results.json'), results)

    def finish(self):
        for file in (self.metrics_file, self.text_file):
            if not file.closed:
                file.close()
