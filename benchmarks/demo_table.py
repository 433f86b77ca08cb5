"""The paper's table in miniature, on the embedded demo: ft, oskdft, kd_ft and student_ft trained
with the same shipped teacher (model_name_or_path=demo-teacher, pre-trained on a population the
student never sees labelled), S seeds each, then scored on Vox1-O / E / H; and a row for the teacher
itself (method frozen: its frozen features + ECAPA-TDNN trained on the demo's 90 speakers).

The configuration is fixed before the table is run (BUDGET, DEFAULTS): every method trains for the
demo's epochs (5) over the 90 speakers, kd_ft for kd_epochs (4) KD-only epochs more (its two steps,
9 epochs in all, counted in the table), each keeps its last epoch.

Printed and written (table.md, table.png in --out): the parameters of each method's deployed model
(SSL model with its adapters + ECAPA-TDNN; the AAM head exists only in training), EER and
minDCF(0.01) as mean ± standard deviation over the seeds, and each method's EER difference to
oskdft with a paired bootstrap 95 % interval over trials (utils/bootstrap.py: every resample draws
the list's targets and non-targets with replacement, the same draw for every method and seed; a
method's EER on a resample is the mean over its seeds). The seeds change the models' initial
draws and the training's random draws, never the corpus or the teacher.

Every run keeps its last epoch (best_model=last): no method is tuned on the lists it is scored on.
The corpus is the demo's own, with its 48 test speakers (demo_test_speakers=48, named here so that
the table keeps them whatever the default): Vox1-O holds 2,592 trials and Vox1-E / H 5,184 each.

    python benchmarks/demo_table.py                     # 3 seeds at the demo's settings
    python benchmarks/demo_table.py --seeds 1 epoch=2   # any key=value of arguments.py goes to every run
    python benchmarks/demo_table.py --stages            # oskdft with the stages after training (below)

--stages: the stages a trained model can take after the paper's training, on oskdft alone, each
row against plain oskdft with the same paired bootstrap: AS-norm of the scores, LMFT (large-margin
fine-tuning, docs/lmft.md), and LMFT + AS-norm + QMF (score calibration, docs/voxceleb.md). One run
per seed gives every row (STAGES: the stages' settings, fixed before the table is run): its
results.json holds the plain and AS-norm figures of the main stages' model and those of the LMFT
model, calibrated.

Run time at the defaults: EXPECTED below. The last line is `demo_table: wall_s=X`.
"""

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import arguments  # noqa: E402
import main  # noqa: E402
from log.local import read_scores, run_folders  # noqa: E402
from machine import describe  # noqa: E402
from utils.bootstrap import interval, paired_bootstrap  # noqa: E402

METHODS = ('ft', 'oskdft', 'kd_ft', 'student_ft', 'frozen')  # the paper's table, top to bottom, then the teacher
REFERENCE = 'oskdft'
LISTS = ('Vox1-O', 'Vox1-E', 'Vox1-H')
# the compute each method gets at the demo's settings: epochs over the 90 training speakers, and what trains
_E, _K = arguments.DEMO['epoch'], arguments.DEMO['kd_epochs']
BUDGET = {
    'ft': f'{_E} SV (teacher SSL + ECAPA)',
    'oskdft': f'{_E} KD + SV in one step',
    'kd_ft': f'{_K} KD + {_E} SV',
    'student_ft': f'{_E} SV (student + ECAPA)',
    'frozen': f'{_E} SV (ECAPA only)',
}
# before the command line's values, which win; the validation list is not needed (the last epoch is kept)
DEFAULTS = ['demo_test_speakers=48', 'best_model=last', 'trials_val=off']
# --stages, fixed before the table is run: LMFT 2 epochs (WeSpeaker's 5 follow 150 epochs; the demo's 5
# get 2, about as long again at 6 s crops), AS-norm over the top 30 of the 90 cohort speakers (the value
# tried on the demo's validation list, docs/demo.md), QMF over 2,000 calibration trials of the training
# speakers, its imposter means over the top 30 too (the demo's 90 speakers hold about 1,000 utterances)
STAGES = ['lmft_epochs=2', 'asnorm_top_k=30', 'qmf=true', 'qmf_trials=2000', 'qmf_top_k=30']


@dataclass(frozen=True)
class Row:
    """A row of the table: which method's runs, which of their scores (scores/<list><suffix>.txt),
    where its figures stand in a run's results.json, and its training budget."""

    method: str
    suffix: str
    figures: Callable  # (results.json, list) -> {'eer', 'min_dcf_0.01', ...}
    budget: str


def main_figures(results, trial_list):
    return results[trial_list]


METHOD_ROWS = {method: Row(method, '', main_figures, BUDGET[method]) for method in METHODS}
STAGE_ROWS = {
    'oskdft': Row('oskdft', '', main_figures, BUDGET['oskdft']),
    'oskdft + AS-norm': Row('oskdft', '-asnorm', lambda results, name: results[name]['asnorm'], BUDGET['oskdft']),
    'oskdft + LMFT': Row('oskdft', '-lmft', lambda results, name: results['lmft'][name], f'{_E} KD + SV, then 2 LMFT'),
    'oskdft + LMFT + AS-norm + QMF': Row(
        'oskdft', '-qmf-lmft', lambda results, name: results['lmft'][name]['qmf'], f'{_E} KD + SV, then 2 LMFT'
    ),
}
EXPECTED = 'about 35-55 min on 2 CPU cores (36 min measured on a quiet machine, 54 on a busier one), far less on a GPU'
EXPECTED_STAGES = 'about 20 min on 2 CPU cores (18 and 20 min measured), far less on a GPU'


def parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('--seeds', type=int, default=3, help='seeds per method: 1, 2, ... (default 3)')
    parser.add_argument('--resamples', type=int, default=1000, help='bootstrap resamples of the trials')
    parser.add_argument('--out', default=None, help='output folder (default exp/demo_table-<date-time>)')
    parser.add_argument(
        '--stages', action='store_true', help='oskdft plain, + AS-norm, + LMFT, + LMFT + AS-norm + QMF (STAGES)'
    )
    parser.add_argument('overrides', nargs='*', metavar='key=value', help='arguments.py values for every run')
    options = parser.parse_args(argv)
    if options.seeds < 1:
        parser.error(f'--seeds {options.seeds}: at least one seed')
    options.out = options.out or os.path.join('exp', f'demo_table-{time.strftime("%Y%m%d-%H%M%S")}')
    options.rows = STAGE_ROWS if options.stages else METHOD_ROWS
    options.settings = DEFAULTS + (STAGES if options.stages else []) + options.overrides
    return options


def train_all(options):
    """Every method for every seed, each one run of main.py into its own folder under out/runs;
    {(method, seed): run folder}."""
    folders = {}
    methods = list(dict.fromkeys(row.method for row in options.rows.values()))
    for seed in range(1, options.seeds + 1):
        for method in methods:
            name = f'{method}-seed{seed}'
            path_log = os.path.join(options.out, 'runs', name)
            started = time.monotonic()
            print(f'demo_table: {name} ...', flush=True)
            main.main(options.settings + [f'method={method}', f'seed={seed}', f'name={name}', f'path_log={path_log}'])
            (folders[method, seed],) = run_folders(path_log, arguments.SYSTEM_ARGS['project'], name)
            print(f'demo_table: {name} done in {(time.monotonic() - started) / 60:.1f} min', flush=True)
    return folders


def run_scores(folder, trial_list):
    """(trial keys 'enroll test' (M,), labels (M,), scores (M,)) of a run's scores/<list>.txt."""
    labels, enroll, test, scores = read_scores(os.path.join(folder, 'scores', f'{trial_list}.txt'))
    return [f'{e} {t}' for e, t in zip(enroll, test)], labels, scores


def read_results(folder):
    with open(os.path.join(folder, 'results.json'), encoding='utf-8') as file:
        return json.load(file)


def collect(folders, rows, seeds, resamples):
    """Per row and list: EER and minDCF(0.01) of every seed, the deployed parameters, and the
    bootstrap interval of the EER difference to the oskdft row."""
    results = {key: read_results(folder) for key, folder in folders.items()}
    reference = REFERENCE
    table = {label: {'params': deployed_parameters(results[row.method, 1]['params'])} for label, row in rows.items()}
    first = rows[reference]
    for trial_list in LISTS:
        if trial_list not in results[first.method, 1]:
            continue
        keys, labels, _ = run_scores(folders[first.method, 1], trial_list)
        systems = {}
        for label, row in rows.items():
            runs = []
            for seed in range(1, seeds + 1):
                run_keys, run_labels, scores = run_scores(folders[row.method, seed], trial_list + row.suffix)
                if run_keys != keys or not np.array_equal(run_labels, labels):
                    raise ValueError(
                        f'{folders[row.method, seed]}: {trial_list}{row.suffix} holds other trials than '
                        f'{folders[first.method, 1]}; the runs must share one corpus'
                    )
                runs.append(scores)
            systems[label] = runs
            table[label][trial_list] = {
                metric: [row.figures(results[row.method, seed], trial_list)[metric] for seed in range(1, seeds + 1)]
                for metric in ('eer', 'min_dcf_0.01')
            }
            table[label][trial_list]['trials'] = len(labels)
        boot = paired_bootstrap(systems, labels, resamples)
        for label in rows:
            difference = np.mean(table[label][trial_list]['eer']) - np.mean(table[reference][trial_list]['eer'])
            table[label][trial_list]['difference'] = (difference, *interval(boot[label] - boot[reference]))
    return table


def deployed_parameters(params):
    """What a deployed model holds: the SSL model (with its adapters) and ECAPA-TDNN."""
    return params['student'] + params['backend']


def mean_std(values, digits):
    """'mean ± std' over seeds (std with ddof 1; just the value for one seed)."""
    if len(values) == 1:
        return f'{values[0]:.{digits}f}'
    return f'{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}'


def markdown(table, rows, lists, header):
    """The two tables: the rows' scores (mean ± std over seeds), then the EER differences to the
    oskdft row with their 95 % intervals; the paper's orderings for the methods' table."""
    reference = REFERENCE
    columns = [f'{name} {metric}' for name in lists for metric in ('EER (%)', 'minDCF(0.01)')]
    lines = [
        header,
        '',
        '| method | epochs | deployed params | ' + ' | '.join(columns) + ' |',
        '|---|---|---:|' + '---:|' * len(columns),
    ]
    for label in rows:
        row = table[label]
        cells = [
            cell for name in lists for cell in (mean_std(row[name]['eer'], 2), mean_std(row[name]['min_dcf_0.01'], 3))
        ]
        lines.append(f'| {label} | {rows[label].budget} | {row["params"]:,} | ' + ' | '.join(cells) + ' |')
    lines += [
        '',
        f'EER difference to {reference} (percentage points; negative: fewer errors than {reference}), '
        f'paired bootstrap 95 % interval over trials:',
        '',
        '| method | ' + ' | '.join(f'{name} ({table[reference][name]["trials"]:,} trials)' for name in lists) + ' |',
        '|---|' + '---:|' * len(lists),
    ]
    for label in rows:
        if label == reference:
            continue
        cells = [
            f'{d:+.2f} [{low:+.2f}, {high:+.2f}]'
            for d, low, high in (table[label][name]['difference'] for name in lists)
        ]
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    if rows is METHOD_ROWS:
        lines += ['', "The paper's orderings, read from the intervals:", '']
        lines += [f'- {line}' for line in orderings(table, lists)]
    return '\n'.join(lines) + '\n'


def orderings(table, lists):
    """Whether each of the paper's orderings holds on each list: 'holds' when the 95 % interval of
    the EER difference lies on the paper's side of 0, 'reversed' when it lies on the other side,
    'level' when it holds 0. ft <= oskdft also holds when level."""
    claims = (
        ('ft', '<=', 'ft <= oskdft'),
        ('kd_ft', '>', 'oskdft < kd_ft'),
        ('student_ft', '>', 'oskdft < student_ft'),
    )
    lines = []
    for method, sign, claim in claims:
        verdicts = []
        for name in lists:
            difference, low, high = table[method][name]['difference']  # method - oskdft
            if sign == '>':  # the paper: method has more errors than oskdft
                verdict = 'holds' if low > 0 else 'reversed' if high < 0 else 'level (not resolved)'
            else:  # the paper: ft has no more errors than oskdft
                verdict = 'holds' if high < 0 else 'reversed' if low > 0 else 'level (holds)'
            verdicts.append(f'{name} {verdict} ({difference:+.2f} [{low:+.2f}, {high:+.2f}])')
        lines.append(f'{claim}: ' + '; '.join(verdicts))
    return lines


def plot(table, rows, lists, path, title):
    """EER per row and list: the mean over seeds as a bar, the standard deviation as error bar."""
    figure = Figure(figsize=(7, 4), layout='constrained')
    axes = figure.add_subplot()
    width = 0.8 / len(rows)
    for i, label in enumerate(rows):
        eers = [table[label][name]['eer'] for name in lists]
        positions = np.arange(len(lists)) + (i - (len(rows) - 1) / 2) * width
        errors = [np.std(e, ddof=1) if len(e) > 1 else 0.0 for e in eers]
        axes.bar(positions, [np.mean(e) for e in eers], width, yerr=errors, capsize=3, label=label)
    axes.set(xticks=np.arange(len(lists)), xticklabels=lists, ylabel='EER (%)', title=title)
    axes.grid(axis='y', alpha=0.3)
    axes.legend()
    figure.savefig(path, format='png', dpi=100)


def main_table(argv):
    started = time.monotonic()
    options = parse(argv)
    print(
        f'demo_table: {len(options.rows)} rows x {options.seeds} seeds into {options.out}; expected at the '
        f'defaults: {EXPECTED_STAGES if options.stages else EXPECTED}; {describe()}',
        flush=True,
    )
    folders = train_all(options)
    table = collect(folders, options.rows, options.seeds, options.resamples)
    lists = [name for name in LISTS if name in table[REFERENCE]]
    minutes = (time.monotonic() - started) / 60
    header = (
        f'Demo table: {options.seeds} seed(s) per row, {" ".join(options.settings)}; '
        f'{minutes:.0f} min in all on {describe()}'
    )
    text = markdown(table, options.rows, lists, header)
    with open(os.path.join(options.out, 'table.md'), 'w') as file:
        file.write(text)
    plot(
        table,
        options.rows,
        lists,
        os.path.join(options.out, 'table.png'),
        f'EER on the demo, mean ± std over {options.seeds} seed(s)',
    )
    print(text, flush=True)
    print(f'demo_table: table.md and table.png in {options.out}', flush=True)
    print(f'demo_table: wall_s={time.monotonic() - started:.0f}', flush=True)


if __name__ == '__main__':
    main_table(sys.argv[1:])
