"""PNG plots of a run: metric curves and the DET curve. Figures are drawn without pyplot (no GUI state)."""
import numpy as np
from matplotlib.figure import Figure
from scipy.stats import norm

DET_TICKS = np.array([0.1, 0.5, 1, 2, 5, 10, 20, 40, 60, 80, 95])     # percent


def plot_curves(file, series, ylabel, title):
    """series: {label: [(step, value), ...]}, one line each, into the open file (PNG)."""
    figure = Figure(figsize=(6, 4), layout='constrained')
    axes = figure.add_subplot()
    for label, points in sorted(series.items()):
        steps, values = zip(*sorted(points))
        axes.plot(steps, values, marker='o' if len(steps) < 30 else None, markersize=3, label=label)
    axes.set(xlabel='epoch', ylabel=ylabel, title=title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.savefig(file, format='png', dpi=100)


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
    axes.set(xticks=ticks, xticklabels=labels, yticks=ticks, yticklabels=labels,
             xlim=(ticks[0], ticks[-1]), ylim=(ticks[0], ticks[-1]),
             xlabel='false alarm rate (%)', ylabel='miss rate (%)', title=title)
    axes.grid(alpha=0.3)
    axes.legend(loc='upper right')
    figure.savefig(file, format='png', dpi=100)
