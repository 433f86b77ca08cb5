"""How much a trial list's EER depends on which speakers it holds: one run's scores on a list,
re-read on random subsets of its speakers (utils/bootstrap.py: speaker_subset_eers), each keeping
the trials among the speakers drawn. A list of few speakers can move a run's EER by points that
no change of the model made: read this before reading a difference on a small list.

    python benchmarks/list_spread.py RUN_FOLDER [--list Vox1-E] [--speakers 12 24] [--draws 400]

RUN_FOLDER: a run folder (its scores/<list>.txt) or a scores file itself (label enroll test score).
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from log.local import read_scores  # noqa: E402
from utils.bootstrap import speaker_subset_eers  # noqa: E402
from utils.metrics import compute_eer  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('run', help='a run folder or a scores file')
    parser.add_argument('--list', default='Vox1-E', help="the run's scores/<list>.txt (a run folder only)")
    parser.add_argument('--speakers', type=int, nargs='+', default=[12, 24], help='subset sizes')
    parser.add_argument('--draws', type=int, default=400)
    parser.add_argument('--seed', type=int, default=0)
    options = parser.parse_args(argv)
    path = options.run if os.path.isfile(options.run) else os.path.join(options.run, 'scores', f'{options.list}.txt')
    if not os.path.isfile(path):
        sys.exit(f'error: no scores file {path}: give a run folder with scores/{options.list}.txt, or the file')
    labels, enroll, test, scores = read_scores(path)
    print(f'{path}: {len(labels)} trials, EER {compute_eer(scores, labels):.2f} %')
    for size in options.speakers:
        try:
            eers, speakers = speaker_subset_eers(scores, labels, enroll, test, size, options.draws, options.seed)
        except ValueError as error:
            sys.exit(f'error: --speakers {size}: {error}')
        if not len(eers):
            print(f'subsets of {size} of its {speakers} speakers: no draw kept both target and non-target trials')
            continue
        low, median, high = np.percentile(eers, [5, 50, 95])
        print(
            f'subsets of {size} of its {speakers} speakers ({len(eers)} draws with both kinds of trial): '
            f'EER median {median:.2f} %, 5-95 % {low:.2f}-{high:.2f} %'
        )


if __name__ == '__main__':
    main()
