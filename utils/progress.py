"""Progress bars for the main process at a terminal only; in a log file they would be noise."""
from tqdm import tqdm


def progress_bar(iterable, description, show=True, total=None, initial=0):
    # disable=None: tqdm turns itself off when the output is not a terminal
    return tqdm(iterable, desc=description, leave=False, disable=None if show else True, total=total,
                initial=initial)
