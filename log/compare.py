"""Several runs' results and settings side by side in one table, as a paper's table is made.

    python -m log.compare exp/OS-KDFT/*         # run folders
    python -m log.compare exp/OS-KDFT           # a folder of run folders: every run in it
    python -m log.compare exp/OS-KDFT --all     # every key setting, not only those that differ

Settings that every run shares are said once above the table; a run that has not finished (no
results.json) shows '-' for its scores.
"""

import argparse
import json
import os
import sys

from log.report import KEY_SETTINGS, metric_cells, scored_lists, table

METRIC_NAMES = ('EER (%)', 'minDCF 0.05', 'minDCF 0.01')


def is_run(path):
    return os.path.isfile(os.path.join(path, 'parameters.json'))


def find_runs(paths):
    """The run folders among paths, and the run folders inside each path that is not one itself."""
    runs = []
    for path in paths:
        if is_run(path):
            runs.append(path)
        elif os.path.isdir(path):
            runs += sorted(os.path.join(path, name) for name in os.listdir(path) if is_run(os.path.join(path, name)))
        else:
            raise ValueError(f'{path}: no such folder')
    return runs


def read_json(path):
    if not os.path.isfile(path):
        return {}
    with open(path, encoding='utf-8') as file:
        return json.load(file)


def read_run(folder):
    """{'name', 'results' ({} when unfinished), 'parameters'} of one run folder."""
    return {
        'name': os.path.basename(os.path.normpath(folder)),
        'results': read_json(os.path.join(folder, 'results.json')),
        'parameters': read_json(os.path.join(folder, 'parameters.json')),
    }


def unique(items):
    return list(dict.fromkeys(items))


def comparison(runs, all_settings=False):
    """The text printed: the settings all runs share, then one row per run of the settings that
    differ, the best epoch, the student's size and every list's scores (with AS-norm where scored)."""
    keys = [key for key in KEY_SETTINGS if any(key in run['parameters'] for run in runs)]
    differ = [key for key in keys if all_settings or len({repr(run['parameters'].get(key)) for run in runs}) > 1]
    shared = [f'{key}={runs[0]["parameters"].get(key)}' for key in keys if key not in differ]
    lists = unique(name for run in runs for name in scored_lists(run['results']))
    normed = [name for name in lists if any('asnorm' in run['results'].get(name, {}) for run in runs)]
    header = ['run', *differ, 'best epoch', 'student parameters']
    header += [f'{name} {metric}' for name in lists for metric in METRIC_NAMES]
    header += [f'{name} AS-norm {metric}' for name in normed for metric in METRIC_NAMES]
    rows = []
    for run in runs:
        results, parameters = run['results'], run['parameters']
        student = results.get('params', {}).get('student')
        row = [run['name'], *(parameters.get(key, '-') for key in differ)]
        row += [results.get('best_epoch', 'unfinished'), f'{student:,}' if student else '-']
        row += [cell for name in lists for cell in metric_cells(results.get(name))]
        row += [cell for name in normed for cell in metric_cells(results.get(name, {}).get('asnorm'))]
        rows.append(row)
    text = table(header, rows)
    return f'same in every run: {", ".join(shared)}\n\n{text}' if shared else text


def main(argv):
    parser = argparse.ArgumentParser(prog='python -m log.compare', description=__doc__.split('\n')[0])
    parser.add_argument('paths', nargs='+', help='run folders, or folders holding run folders')
    parser.add_argument('--all', action='store_true', help='every key setting, not only those that differ')
    options = parser.parse_args(argv)
    runs = find_runs(options.paths)
    if not runs:
        raise ValueError(f'no run folder (one holding parameters.json) in {" ".join(options.paths)}')
    print(comparison([read_run(folder) for folder in runs], options.all))


if __name__ == '__main__':
    try:
        main(sys.argv[1:])
    except ValueError as error:
        sys.exit(f'error: {error}')
