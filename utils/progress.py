"""Progress bars for the main process at a terminal only; in a log file they would be noise."""

from datetime import timedelta

from tqdm import tqdm

# tqdm's default layout without its own time-left estimate, for a bar whose postfix shows the run's
OWN_ETA_FORMAT = '{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, {rate_fmt}{postfix}]'


def progress_bar(iterable, description, show=True, total=None, initial=0, own_eta=True):
    """own_eta=False: the bar leaves out tqdm's time left (the caller shows its own in the postfix)."""
    # disable=None: tqdm turns itself off when the output is not a terminal
    return tqdm(
        iterable,
        desc=description,
        leave=False,
        disable=None if show else True,
        total=total,
        initial=initial,
        bar_format=None if own_eta else OWN_ETA_FORMAT,
    )


def format_duration(seconds):
    """Whole seconds as H:MM:SS, with days in front from one day on: '2 days, 3:04:05'."""
    return str(timedelta(seconds=round(seconds)))
