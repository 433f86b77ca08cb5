"""Running main's modes in the test process, as `python main.py ...` runs them."""

import json

import numpy as np
import pytest
import torch

import main


def run_mode(path_log, *argv):
    """main.main(argv) into a new run folder under path_log: (the folder, its results.json)."""
    before = set(path_log.glob('OS-KDFT/*'))
    main.main([*argv, f'path_log={path_log}'])
    (folder,) = set(path_log.glob('OS-KDFT/*')) - before
    return folder, json.loads((folder / 'results.json').read_text())


def user_error(*argv):
    """The one line `python main.py argv` prints for a user's error (main.user_message)."""
    with pytest.raises(main.USER_ERRORS) as caught:
        main.main(list(argv))
    return main.user_message(caught.value)


def read_scores(run_dir, name='Vox1-O'):
    """A run's trial scores: [(label, enroll, test, score)]."""
    rows = [line.split() for line in (run_dir / 'scores' / f'{name}.txt').read_text().splitlines()]
    return [(int(label), enroll, test, float(score)) for label, enroll, test, score in rows]


def score_arrays(run_dir, name='Vox1-O'):
    rows = read_scores(run_dir, name)
    return np.array([r[3] for r in rows]), np.array([r[0] for r in rows])


def checkpoints_not_ours(folder):
    """{case: (checkpoint path, the line main prints for it)}: files that are not a run's checkpoint."""
    torch.save({'weight': torch.zeros(2)}, folder / 'plain.pt')
    (folder / 'notes.pt').write_text('not a checkpoint\n')
    return {
        'plain dict': (
            folder / 'plain.pt',
            f'checkpoint={str(folder / "plain.pt")!r} is not a checkpoint of this project (no model, args, '
            f'epoch, num_classes entry): give the last.pt / best.pt of a run',
        ),
        'text file': (
            folder / 'notes.pt',
            f'checkpoint={str(folder / "notes.pt")!r} cannot be read as a checkpoint (torch.load fails on '
            f'it): give the last.pt / best.pt of a run',
        ),
        'missing': (folder / 'none.pt', f'checkpoint={str(folder / "none.pt")!r}: no such checkpoint file'),
    }
