"""OS-KDFT: one-step knowledge distillation and fine-tuning for speaker verification.

    python main.py                      # the embedded demo: no download, no GPU
    python main.py key=value ...        # any key of arguments.py
    python main.py mode=evaluate checkpoint=exp/.../best.pt path_test=... path_trials=...
"""
import os
import re
import sys

import torch

from arguments import DATASET_PATHS, ArgumentError, get_args
from data.demo import prepare_demo
from log.controller import LogModuleController
from trainer.trainer import evaluate_checkpoint, train
from utils import distributed
from utils.seed import seed_everything

PROJECT_ROOT = os.path.dirname(os.path.abspath(__file__))


def pick_device(name):
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name == 'cuda' and not torch.cuda.is_available():
        raise ValueError('device=cuda but no GPU is visible; use device=auto or device=cpu')
    return torch.device(name)


def check_arguments(args):
    """Fails before anything is built or written when a value cannot work."""
    if args['mode'] not in ('train', 'evaluate'):
        raise ArgumentError(f'mode={args["mode"]!r}: expected train or evaluate')
    if args['method'] != 'oskdft':
        raise ArgumentError(f'method={args["method"]!r}: this version runs method=oskdft')
    if args['student_warmup_epochs'] < 2:
        raise ArgumentError('student_warmup_epochs must be at least 2 (the warm-up is e / W for e < W)')
    if args['mode'] == 'train' and args['epoch'] < 1:
        raise ArgumentError(f'epoch={args["epoch"]}: train for at least one epoch')
    if bool(args['path_musan']) != bool(args['path_rir']):
        missing = 'path_rir' if args['path_musan'] else 'path_musan'
        raise ArgumentError(f'{missing} is not set: augmentation needs both path_musan and path_rir (or neither)')
    required = ['path_train'] if args['mode'] == 'train' else []
    required += ['path_test'] if args['path_trials'] else []
    for key in required:
        if not args[key]:
            raise ArgumentError(f'{key} is not set: give the folder in arguments.py or as {key}=PATH')
    for key in DATASET_PATHS:
        if args[key] and not os.path.isdir(args[key]):
            raise ArgumentError(f'{key}={args[key]!r} is not a folder')
    if args['mode'] == 'evaluate' and not (args['checkpoint'] and os.path.isfile(args['checkpoint'])):
        raise ArgumentError(f'checkpoint={args["checkpoint"]!r}: mode=evaluate needs the last.pt / best.pt of a run')


def use_demo_corpus(args):
    """Points every dataset path at the embedded demo corpus, made once into path_cache."""
    root = os.path.join(args['path_cache'], 'demo')
    if distributed.is_main():
        print(f'embedded demo: corpus under {root} (generated on the first run, about 30 s)', flush=True)
        prepare_demo(root, seed=args['seed'])
    distributed.barrier()
    args.update(prepare_demo(root, seed=args['seed']))


def main(argv):
    args, system_args, experiment_args = get_args(argv)
    if args['demo']:
        use_demo_corpus(args)
    check_arguments(args)
    device = pick_device(args['device'])
    seed_everything(args['seed'])

    logger = (LogModuleController.Builder(args['name'], args['project'])
              .tags(args['tags'].split(','))
              .description(args['description'])
              .save_source_files(PROJECT_ROOT)
              .use_local(args['path_log'])
              .build(rank=distributed.rank()))
    logger.log_parameter(args)
    logger.log_text(f'device {device}; {"embedded demo corpus" if args["demo"] else "dataset"} '
                    f'train={args["path_train"]} test={args["path_test"]}')
    try:
        run = evaluate_checkpoint if args['mode'] == 'evaluate' else train
        results = run(args, logger, device)
        logger.log_text(f'results: { {k: v for k, v in results.items() if k != "params"} }')
    except Exception as error:
        logger.log_text(f'stopped: {user_message(error)}')
        raise
    finally:
        logger.finish()


def user_message(error):
    """The one line that names what to fix; errors raised in a data-loading worker arrive
    wrapped in the worker's traceback, whose last line is the original message."""
    lines = str(error).strip().splitlines()
    return re.sub(r'^[\w.]+(Error|Exception): ', '', lines[-1]) if lines else type(error).__name__


if __name__ == '__main__':
    try:
        main(sys.argv[1:])
    except (OSError, ValueError) as error:      # what a user can cause: paths, audio, arguments
        sys.exit(f'error: {user_message(error)}')
