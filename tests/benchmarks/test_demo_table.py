"""benchmarks/demo_table.py on a very small setting (one seed, one epoch, the small demo corpus, a
tiny random teacher): a table with a row for every method, whose numbers are those of its runs."""

import glob
import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import FAST, ROOT

METHODS = ['ft', 'oskdft', 'kd_ft', 'student_ft', 'frozen']
LISTS = ['Vox1-O', 'Vox1-E', 'Vox1-H']
NUMBER = r'[+-]?\d+\.\d+'


@pytest.fixture(scope='module')
def table(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp('table')
    paths = [f'{key}={value}' for key, value in corpus.items()]
    done = subprocess.run(
        [
            sys.executable,
            'benchmarks/demo_table.py',
            '--seeds',
            '1',
            '--resamples',
            '200',
            '--out',
            str(out),
            *paths,
            *FAST,
            'epoch=1',
            'kd_epochs=1',
            'T_0=1',
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, done.stdout


def results_of(out, method):
    (path,) = glob.glob(str(out / 'runs' / f'{method}-seed1' / '*' / f'{method}-seed1-*' / 'results.json'))
    return json.loads(open(path).read())


def rows(text):
    """The cells of every Markdown table row (separator rows left out)."""
    return [
        [cell.strip() for cell in line.strip('|').split('|')]
        for line in text.splitlines()
        if line.startswith('|') and not line.startswith('|---')
    ]


def test_the_table_has_every_methods_row_with_its_runs_numbers(table):
    out, _ = table
    scores, differences = [], []
    for row in rows((out / 'table.md').read_text()):
        (scores if len(row) == 9 else differences).append(row)
    assert scores[0] == ['method', 'epochs', 'deployed params'] + [
        f'{name} {metric}' for name in LISTS for metric in ('EER (%)', 'minDCF(0.01)')
    ]
    assert [row[0] for row in scores[1:]] == METHODS
    for row in scores[1:]:
        results = results_of(out, row[0])
        assert row[2] == f'{results["params"]["student"] + results["params"]["backend"]:,}'
        for i, name in enumerate(LISTS):
            assert row[3 + 2 * i] == f'{results[name]["eer"]:.2f}'
            assert row[4 + 2 * i] == f'{results[name]["min_dcf_0.01"]:.3f}'
    assert [row[0] for row in differences[1:]] == ['ft', 'kd_ft', 'student_ft', 'frozen']
    reference = results_of(out, 'oskdft')
    for row in differences[1:]:
        results = results_of(out, row[0])
        for cell, name in zip(row[1:], LISTS):
            difference, low, high = map(float, re.fullmatch(rf'({NUMBER}) \[({NUMBER}), ({NUMBER})\]', cell).groups())
            assert difference == pytest.approx(results[name]['eer'] - reference[name]['eer'], abs=0.006)
            assert low <= high


def test_the_deployed_model_of_ft_is_the_whole_teacher(table):
    out, _ = table
    ft, oskdft = results_of(out, 'ft'), results_of(out, 'oskdft')
    assert ft['params']['student'] == ft['params']['teacher'] == oskdft['params']['teacher']
    assert oskdft['params']['student'] < oskdft['params']['teacher']


def test_the_plot_is_written_and_the_wall_time_is_the_last_line(table):
    out, stdout = table
    assert (out / 'table.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert re.fullmatch(r'demo_table: wall_s=\d+', stdout.strip().splitlines()[-1])


def test_each_ordering_verdict_follows_its_interval(table):
    """'holds' / 'reversed' / 'level' as the interval of method - oskdft lies on the paper's side of 0,
    the other side, or holds 0 (ft <= oskdft: ft's interval below 0 holds)."""
    out, _ = table
    text = (out / 'table.md').read_text()
    verdicts = re.findall(
        rf'(\S+) (holds|reversed|level \((?:not resolved|holds)\)) \(({NUMBER}) \[({NUMBER}), ({NUMBER})\]\)', text
    )
    assert len(verdicts) == 3 * len(LISTS)
    claims = [line for line in text.splitlines() if line.startswith('- ')]
    assert [line.split(':')[0] for line in claims] == ['- ft <= oskdft', '- oskdft < kd_ft', '- oskdft < student_ft']
    for k, (_, verdict, _, low, high) in enumerate(verdicts):
        low, high = float(low), float(high)
        paper_side_is_below = k < len(LISTS)  # ft <= oskdft: ft's difference below 0
        if verdict == 'holds':
            assert high < 0 if paper_side_is_below else low > 0
        elif verdict == 'reversed':
            assert low > 0 if paper_side_is_below else high < 0
        else:
            assert low <= 0 <= high


def test_the_stages_rows_read_each_stages_own_scores_and_figures(tmp_path, monkeypatch):
    """--stages reads every row from one run per seed: a row that took another stage's score file or
    results.json entry (the plain scores for AS-norm's, the main model's for LMFT's) would show that
    stage's numbers. Each row's scores here are built so that its EER is known: row r misorders r of
    the 4 target / non-target pairs, and its results.json figures are set to match."""
    import importlib.util

    monkeypatch.syspath_prepend(os.path.join(ROOT, 'benchmarks'))  # its neighbour modules
    spec = importlib.util.spec_from_file_location('demo_table', os.path.join(ROOT, 'benchmarks', 'demo_table.py'))
    demo_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo_table)
    labels = [1, 0] * 4
    results = {'params': {'student': 10, 'backend': 5}, 'lmft': {}}
    folders = {}
    for seed in (1, 2):
        folder = tmp_path / f'seed{seed}'
        (folder / 'scores').mkdir(parents=True)
        for errors, row in enumerate(demo_table.STAGE_ROWS.values()):
            for name in LISTS:
                scores = [(0.0 if i // 2 < errors else 1.0) if label else 0.5 for i, label in enumerate(labels)]
                lines = [f'{label} e{i} t{i} {score}' for i, (label, score) in enumerate(zip(labels, scores))]
                (folder / 'scores' / f'{name}{row.suffix}.txt').write_text('\n'.join(lines) + '\n')
                figures = {'eer': 25.0 * errors + seed, 'min_dcf_0.01': 0.1 * errors}
                entry = (
                    results.setdefault(name, {})
                    if row.suffix in ('', '-asnorm')
                    else results['lmft'].setdefault(name, {})
                )
                if row.suffix in ('', '-lmft'):
                    entry.update(figures)
                else:
                    entry['asnorm' if row.suffix == '-asnorm' else 'qmf'] = figures
        (folder / 'results.json').write_text(json.dumps(results))
        folders['oskdft', seed] = str(folder)
    table = demo_table.collect(folders, demo_table.STAGE_ROWS, 2, 200)
    for errors, label in enumerate(demo_table.STAGE_ROWS):
        for name in LISTS:
            assert table[label][name]['eer'] == [25.0 * errors + 1, 25.0 * errors + 2]
            assert table[label][name]['min_dcf_0.01'] == [0.1 * errors] * 2
            difference, low, high = table[label][name]['difference']
            assert difference == pytest.approx(25.0 * errors)
            # the bootstrap reads the row's own score file: only the reference's is plain oskdft's
            assert (high > 0) if errors else (low == high == 0)
