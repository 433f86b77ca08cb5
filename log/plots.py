"""PNG plots of a run: metric curves, the DET curve and the score histograms of a trial list.
Figures are drawn without pyplot (no GUI state)."""

import os
from collections import defaultdict

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import norm

from utils.checkpoint import write_atomic
from utils.metrics import compute_eer, det_curve

DET_TICKS = np.array([0.1, 0.5, 1, 2, 5, 10, 20, 40, 60, 80, 95])  # percent

# The curves drawn once per epoch: file, y label, y scale, and which metrics (one line each, named
# by the part of the metric's name that tells them apart).
EPOCH_PLOTS = (
    ('loss.png', 'loss', 'linear', lambda name: name.startswith('loss/'), lambda name: name.split('/')[1]),
    ('lr.png', 'learning rate', 'log', lambda name: name.startswith('lr/'), lambda name: name.split('/')[1]),
    (
        'eer.png',
        'EER (%)',
        'linear',
        lambda name: name.startswith('eval/') and name.endswith('/eer'),
        lambda name: name[len('eval/') : -len('/eer')],
    ),
    # large-margin fine-tuning's epochs (metrics lmft/...): their own figures
    (
        'lmft_loss.png',
        'loss (LMFT)',
        'linear',
        lambda name: name.startswith('lmft/loss/'),
        lambda name: name.split('/')[2],
    ),
    (
        'lmft_lr.png',
        'learning rate (LMFT)',
        'log',
        lambda name: name.startswith('lmft/lr/'),
        lambda name: name.split('/')[2],
    ),
    (
        'lmft_eer.png',
        'EER (%) (LMFT)',
        'linear',
        lambda name: name.startswith('lmft/eval/') and name.endswith('/eer'),
        lambda name: name[len('lmft/eval/') : -len('/eer')],
    ),
)


def plot_curves(file, series, ylabel, title, yscale='linear'):
    """series: {label: [(step, value), ...]}, one line each, into the open file (PNG)."""
    figure = Figure(figsize=(6, 4), layout='constrained')
    axes = figure.add_subplot()
    for label, points in sorted(series.items()):
        steps, values = zip(*sorted(points))
        axes.plot(steps, values, marker='o' if len(steps) < 30 else None, markersize=3, label=label)
    axes.set(xlabel='epoch', ylabel=ylabel, title=title, yscale=yscale)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.savefig(file, format='png', dpi=100)


def draw_epoch_plots(records, folder):
    """loss.png, lr.png and eer.png in folder from the metric records so far (a plot whose metrics
    are not there yet is left out); returns the paths written."""
    history = defaultdict(list)  # metric name -> [(step, value)]
    for record in records:
        history[record['name']].append((record['step'], record['value']))
    written = []
    for file_name, ylabel, yscale, selects, label in EPOCH_PLOTS:
        series = {label(name): points for name, points in history.items() if selects(name)}
        if series:
            path = os.path.join(folder, file_name)
            os.makedirs(folder, exist_ok=True)
            write_atomic(path, lambda file: plot_curves(file, series, ylabel, ylabel, yscale))
            written.append(path)
    return written


def probit(rate):
    """Normal deviate of a rate; 0 and 1 are clipped so they stay finite (just off the axes)."""
    return norm.ppf(np.clip(rate, 1e-6, 1 - 1e-6))


def plot_det(file, p_fa, p_miss, eer, title):
    """DET curve on probit axes (rates as fractions, eer in percent) into the open file (PNG)."""
    figure = Figure(figsize=(5, 5), layout='constrained')
    axes = figure.add_subplot()
    axes.plot(probit(p_fa), probit(p_miss), label='DET')
    axes.plot(probit(eer / 100), probit(eer / 100), 'o', label=f'EER {eer:.2f} %')
    ticks = probit(DET_TICKS / 100)
    labels = [f'{tick:g}' for tick in DET_TICKS]
    axes.set(
        xticks=ticks,
        xticklabels=labels,
        yticks=ticks,
        yticklabels=labels,
        xlim=(ticks[0], ticks[-1]),
        ylim=(ticks[0], ticks[-1]),
        xlabel='false alarm rate (%)',
        ylabel='miss rate (%)',
        title=title,
    )
    axes.grid(alpha=0.3)
    axes.legend(loc='upper right')
    figure.savefig(file, format='png', dpi=100)


def score_densities(scores, labels):
    """(bin edges, target density, non-target density): the two score histograms over the same bins
    (10 to 60, about 20 trials a bin), each normalised to integrate to 1."""
    edges = np.histogram_bin_edges(scores, bins=min(60, max(10, len(scores) // 20)))
    target = np.histogram(scores[labels == 1], bins=edges, density=True)[0]
    nontarget = np.histogram(scores[labels == 0], bins=edges, density=True)[0]
    return edges, target, nontarget


def plot_score_histograms(file, scores, labels, title):
    """Target and non-target score densities into the open file (PNG): how far apart the model puts
    the two, which one EER number hides."""
    figure = Figure(figsize=(6, 4), layout='constrained')
    axes = figure.add_subplot()
    edges, target, nontarget = score_densities(scores, labels)
    axes.stairs(target, edges, fill=True, alpha=0.5, label=f'target ({np.sum(labels == 1):,})')
    axes.stairs(nontarget, edges, fill=True, alpha=0.5, label=f'non-target ({np.sum(labels == 0):,})')
    axes.set(xlabel='score', ylabel='density', title=title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.savefig(file, format='png', dpi=100)


def draw_score_plots(folder, trial_list, labels, scores):
    """det_<list>.png and scores_<list>.png in folder; returns the paths written (none when a score
    is not finite: a diverged model has no curve)."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(scores)):
        return []
    os.makedirs(folder, exist_ok=True)
    title = f'{trial_list} ({len(scores):,} trials)'
    p_fa, p_miss = det_curve(scores, labels)
    eer = compute_eer(scores, labels)
    det = os.path.join(folder, f'det_{trial_list}.png')
    write_atomic(det, lambda file: plot_det(file, p_fa, p_miss, eer, title))
    histograms = os.path.join(folder, f'scores_{trial_list}.png')
    write_atomic(histograms, lambda file: plot_score_histograms(file, scores, labels, title))
    return [det, histograms]
