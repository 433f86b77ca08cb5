"""results.md: a run's scores, key settings and performance as a person reads them, built from
results.json's dict and the run's parameters. Each section is one function of (results, parameters)
in SECTIONS; a new section is one more function there."""

import math

from utils.hardware import gpu_summary
from utils.progress import format_duration

TRIAL_LISTS = ('Vox1-O', 'Vox1-E', 'Vox1-H')

# The settings that tell runs apart in a paper's table: results.md lists them, log.compare sets
# them side by side.
KEY_SETTINGS = (
    'method',
    'preset',
    'model_name_or_path',
    'num_hidden_layers',
    'adapter_bottleneck',
    'ecapa_channels',
    'epoch',
    'kd_epochs',
    'batch_size',
    'lr',
    'asnorm_top_k',
    'qmf',
    'seed',
)


def scored_lists(results):
    """The trial lists results holds, in the official order first."""
    lists = [name for name, value in results.items() if isinstance(value, dict) and 'eer' in value]
    return sorted(lists, key=lambda name: (TRIAL_LISTS.index(name) if name in TRIAL_LISTS else len(TRIAL_LISTS), name))


def format_number(value, digits):
    """A metric as text: '-' where there is none, 'not finite' for a diverged model's NaN."""
    if value is None:
        return '-'
    if not math.isfinite(value):
        return 'not finite'
    return f'{value:.{digits}f}'


def metric_cells(scores):
    """EER (%), minDCF 0.05 and 0.01 of one list (or its AS-norm part) as table cells."""
    scores = scores or {}
    return [
        format_number(scores.get('eer'), 3),
        format_number(scores.get('min_dcf_0.05'), 4),
        format_number(scores.get('min_dcf_0.01'), 4),
    ]


def table(header, rows):
    """A markdown table."""
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(str(cell) for cell in row) + ' |' for row in rows]
    return '\n'.join(lines)


def title_section(results, parameters):
    method = results.get('method', parameters.get('method', ''))
    return f'# {parameters.get("name", "run")} ({method})'


def scores_section(results, parameters):
    """One row per trial list, and one more per list scored with AS-norm."""
    rows = score_rows(results)
    if not rows:
        return '## Scores\n\nNo trial list was scored.'
    return f'## Scores of the best model (epoch {results.get("best_epoch", "-")})\n\n{table(SCORE_HEADER, rows)}'


def lmft_section(results, parameters):
    """The scores of large-margin fine-tuning's model (results.json's 'lmft'); nothing without LMFT."""
    lmft = results.get('lmft')
    if not lmft:
        return None
    rows = score_rows(lmft)
    title = f'## Scores after large-margin fine-tuning (epoch {lmft.get("best_epoch", "-")})'
    return f'{title}\n\n{table(SCORE_HEADER, rows) if rows else "No trial list was scored."}'


SCORE_HEADER = ['trial list', 'trials', 'EER (%)', 'minDCF 0.05', 'minDCF 0.01']


def score_rows(results):
    """One row per trial list, and one more per list scored with AS-norm, and with QMF."""
    rows = []
    for name in scored_lists(results):
        scores = results[name]
        rows.append([name, scores.get('trials', '-'), *metric_cells(scores)])
        if 'asnorm' in scores:
            norm = scores['asnorm']
            how = f'{name} + AS-norm (top {norm.get("top_k")} of {norm.get("cohort")})'
            rows.append([how, scores.get('trials', '-'), *metric_cells(norm)])
        if 'qmf' in scores:
            rows.append([f'{name} + QMF', scores.get('trials', '-'), *metric_cells(scores['qmf'])])
    return rows


def settings_section(results, parameters):
    rows = [[key, f'`{parameters[key]}`'] for key in KEY_SETTINGS if key in parameters]
    params = results.get('params', {})
    for part in ('teacher', 'student', 'backend'):
        if part in params:
            rows.append([f'{part} parameters', f'{params[part]:,}'])
    return f'## Settings\n\n{table(["setting", "value"], rows)}'


def performance_section(results, parameters):
    """Throughput, the time split, peak memory and the hardware (results.json's 'performance');
    nothing when the run has none."""
    summary = results.get('performance')
    if not summary:
        return None
    rows = []
    if 'utterances_per_second' in summary:
        rows += [
            ['utterances per second (all processes)', f'{summary["utterances_per_second"]:.1f}'],
            ['waiting for data', f'{summary["data_wait_fraction"]:.1%} of the training time'],
            ['seconds per step', f'{summary["seconds_per_step"]:.3f}'],
            ['training', f'{format_duration(summary["training_seconds"])} ({summary["training_steps"]:,} steps)'],
        ]
    rows.append(['evaluation', format_duration(summary['evaluation_seconds'])])
    if 'peak_gpu_reserved_gib' in summary:
        allocated, reserved = summary['peak_gpu_allocated_gib'], summary['peak_gpu_reserved_gib']
        rows.append(['peak GPU memory (any process)', f'{allocated:.2f} GiB allocated, {reserved:.2f} reserved'])
    else:
        rows.append(['peak resident memory (any process)', f'{summary["peak_cpu_resident_gib"]:.2f} GiB'])
    hardware = summary['hardware']
    rows += [
        ['processes', summary['processes']],
        ['CPU', f'{hardware["cpu"]} ({hardware["cpu_cores"]} cores)'],
        ['GPUs', gpu_summary(hardware, 'none')],
        ['torch / CUDA', f'{hardware["torch"]} / {hardware["cuda"]}'],
    ]
    return f'## Performance\n\n{table(["", "value"], rows)}'


SECTIONS = (title_section, scores_section, lmft_section, settings_section, performance_section)


def results_markdown(results, parameters):
    """results.md's text: every section of SECTIONS in turn."""
    sections = (section(results, parameters) for section in SECTIONS)
    return '\n\n'.join(text for text in sections if text) + '\n'
