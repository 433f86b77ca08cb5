"""The trial lists a run scores (Vox1-O, E, H and a validation list), each read from path_trials."""

import os

from data.datasets import resolve_test_files
from data.voxceleb import OFFICIAL_TRIAL_FILES, identify_voxceleb, read_trials
from evaluation.evaluate import trial_utterances

TRIAL_LISTS = {'Vox1-O': 'trials_vox1_o', 'Vox1-E': 'trials_vox1_e', 'Vox1-H': 'trials_vox1_h', 'Val': 'trials_val'}


def load_trial_lists(args, logger, manifest=None):
    """The trial lists found in path_trials, each under its trials_vox1_* name or else the first of
    its official names that is there; the log says which file each came from, and which lists are
    left out. Vox1-E and H are left out when the training set (manifest) is VoxCeleb1 dev: their
    speakers are its speakers. Checked before any training to name only files that path_test holds."""
    lists = {}
    vox1_training = manifest is not None and identify_voxceleb(manifest.speakers) == 'VoxCeleb1'
    for name, key in TRIAL_LISTS.items():
        if vox1_training and name != 'Vox1-O':
            logger.log_text(f'{name}: left out, path_train is VoxCeleb1 dev, whose speakers its trials use')
            continue
        if args[key] == 'off' or (args[key] is None and not OFFICIAL_TRIAL_FILES[name]):
            if args[key] == 'off':
                logger.log_text(f'{name}: left out ({key}=off)')
            continue
        candidates = [args[key]] if args[key] else OFFICIAL_TRIAL_FILES[name]
        found = [
            file
            for file in candidates
            if args['path_trials'] and os.path.isfile(os.path.join(args['path_trials'], file))
        ]
        if found:
            lists[name] = read_trials(os.path.join(args['path_trials'], found[0]))
            logger.log_text(f'{name}: {len(lists[name].labels)} trials from {found[0]}')
        else:
            where = f'in path_trials={args["path_trials"]!r}' if args['path_trials'] else '(path_trials is not set)'
            logger.log_text(f'{name}: no {" or ".join(candidates)} {where} ({key}), left out')
    resolve_test_files(args['path_test'], trial_utterances(lists))
    return lists
