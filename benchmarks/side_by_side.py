"""Two or more runs' curves side by side, read from their run folders' metrics.jsonl: each epoch's
losses and scored lists' EER (the demo scores its validation list), then the final EER of every list.

    python benchmarks/side_by_side.py fp32=exp/a bf16=exp/b     # LABEL=a run folder, or a folder
                                                               # holding one run folder somewhere below

The last line is `side_by_side: <label> <list> eer=X ...` for the final EER of each run on Vox1-O
(or the first final list)."""

import argparse
import collections
import glob
import json
import os

EPOCH_METRICS = ('loss/kd', 'loss/sv', 'loss/total')


def run_folder(path):
    """The run folder at path, or the one run folder found below it."""
    if os.path.isfile(os.path.join(path, 'metrics.jsonl')):
        return path
    found = sorted(glob.glob(os.path.join(path, '**', 'metrics.jsonl'), recursive=True))
    if len(found) != 1:
        raise SystemExit(f'side_by_side: {path}: expected one run folder (with metrics.jsonl), found {len(found)}')
    return os.path.dirname(found[0])


def read_metrics(folder):
    """{name: {step: value}} of a run's metrics.jsonl (the last value of a repeated step)."""
    metrics = collections.defaultdict(dict)
    with open(os.path.join(folder, 'metrics.jsonl')) as file:
        for line in file:
            record = json.loads(line)
            metrics[record['name']][record['step']] = record['value']
    return metrics


def table(runs, names, steps):
    """Rows of `step  name_1 (run_1 run_2 ...)  name_2 (...)`, one per step."""
    labels = list(runs)
    head = 'epoch  ' + '  '.join(f'{name + " (" + " / ".join(labels) + ")":>{9 * len(labels) + 2}s}' for name in names)
    rows = [head]
    for step in steps:
        cells = []
        for name in names:
            values = [runs[label].get(name, {}).get(step) for label in labels]
            cells.append(
                ' '.join(f'{v:8.3f}' if v is not None else f'{"-":>8s}' for v in values).rjust(9 * len(labels) + 2)
            )
        rows.append(f'{step:5d}  ' + '  '.join(cells))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('runs', nargs='+', metavar='LABEL=FOLDER')
    options = parser.parse_args(argv)
    runs = {}
    for item in options.runs:
        label, sep, path = item.partition('=')
        if not sep:
            parser.error(f'{item}: expected LABEL=FOLDER')
        runs[label] = read_metrics(run_folder(path))
    names = sorted({name for metrics in runs.values() for name in metrics})
    evals = [name for name in names if name.startswith('eval/') and name.endswith('/eer')]
    epochs = sorted(
        {step for metrics in runs.values() for name in (*EPOCH_METRICS, *evals) for step in metrics.get(name, {})}
    )
    for line in table(runs, [*EPOCH_METRICS, *evals], epochs):
        print(line)
    finals = [name for name in names if name.startswith('final/') and name.endswith('/eer') and '/asnorm/' not in name]
    print('\nfinal EER (%) of the best epoch')
    for name in finals:
        values = '  '.join(
            f'{label} {next(iter(runs[label][name].values()), float("nan")):.3f}'
            if name in runs[label]
            else f'{label} -'
            for label in runs
        )
        print(f'  {name.split("/")[1]:8s} {values}')
    key = 'final/Vox1-O/eer' if 'final/Vox1-O/eer' in finals else (finals[0] if finals else None)
    summary = ' '.join(
        f'{label}={next(iter(runs[label][key].values())):.3f}' for label in runs if key and key in runs[label]
    )
    print(f'side_by_side: {key.split("/")[1] if key else "no final list"} eer {summary}')


if __name__ == '__main__':
    main()
