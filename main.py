"""OS-KDFT: one-step knowledge distillation and fine-tuning for speaker verification.

python main.py                      # the embedded demo: no download, no GPU
python main.py key=value ...        # any key of arguments.py
torchrun --nproc_per_node=N main.py ...     # N processes (GPUs); plain `python main.py` uses every visible GPU
python main.py resume=auto          # continue the newest interrupted run of this name in its own folder
python main.py mode=evaluate checkpoint=exp/.../best.pt
python main.py mode=export checkpoint=exp/.../best.pt                         # TorchScript + ONNX + model.json
python main.py mode=embed checkpoint=exp/.../best.pt wav_list=FILE out=DIR    # embeddings of many files
python main.py mode=verify checkpoint=exp/.../best.pt enroll=a.wav test=b.wav
"""

import os
import re
import sys
import warnings

import torch
import transformers
from torch.multiprocessing import ProcessExitedException

from arguments import DATASET_PATHS, EXPERIMENT_ARGS, ArgumentError, Settings, check_choices, describe, parse
from data.demo import prepare_demo
from inference.embed import check_inputs, embed_checkpoint
from inference.evaluate import evaluate_checkpoint
from inference.export import export_checkpoint
from inference.verify import check_pair, read_threshold, verify_checkpoint
from log.controller import LogModuleController
from log.local import run_folders
from recipes.demo_teacher import RECORD, SHIPPED, TEACHER_NAME, describe_teacher
from trainer.train import TrainingDiverged, train
from utils import distributed
from utils.checkpoint import load_checkpoint

PROJECT_ROOT = os.path.dirname(os.path.abspath(__file__))
USER_ERRORS = (OSError, ValueError, TrainingDiverged)  # paths, audio, arguments, a diverging run
# the modes that use a trained model (mode=train aside): each rebuilds it from `checkpoint` alone
CHECKPOINT_MODES = {
    'evaluate': evaluate_checkpoint,
    'export': export_checkpoint,
    'embed': embed_checkpoint,
    'verify': verify_checkpoint,
}
SINGLE_PROCESS_MODES = ('export', 'embed', 'verify')  # no trial lists to shard: one process does the work


def device_type(name):
    if name == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if name == 'cuda' and not torch.cuda.is_available():
        raise ArgumentError('device=cuda but no GPU is visible; use device=auto or device=cpu')
    return name


def check_values(args):
    """Fails before anything is made or written when a setting cannot work (the settings of a few
    values: arguments.CHOICES)."""
    check_choices(args)
    if args['kd_epochs'] < 0:
        raise ArgumentError(f'kd_epochs={args["kd_epochs"]}: expected 0 or more')
    device_type(args['device'])
    if args['student_warmup_epochs'] < 2:
        raise ArgumentError('student_warmup_epochs must be at least 2 (the warm-up is e / W for e < W)')
    if args['mode'] == 'train' and args['epoch'] < 1:
        raise ArgumentError(f'epoch={args["epoch"]}: train for at least one epoch')
    if args['num_workers'] != 'auto' and not str(args['num_workers']).isdigit():
        raise ArgumentError(
            f'num_workers={args["num_workers"]!r}: expected auto or a count (0: load in the training process)'
        )
    if args['eval_batch_seconds'] <= 0:
        raise ArgumentError(f'eval_batch_seconds={args["eval_batch_seconds"]}: expected a positive number of seconds')
    if args['demo_test_speakers'] < 4:
        raise ArgumentError(
            f'demo_test_speakers={args["demo_test_speakers"]}: expected 4 or more (Vox1-O takes half, of both groups)'
        )
    if args['max_bad_steps'] < 1 or args['log_interval'] < 1:
        raise ArgumentError('max_bad_steps and log_interval must be at least 1')
    if not 0 < args['p_target'] < 1:
        raise ArgumentError(f'p_target={args["p_target"]}: expected a prior between 0 and 1')
    if args['qmf'] and (args['qmf_trials'] < 2 or args['qmf_top_k'] < 2):
        raise ArgumentError(
            f'qmf_trials={args["qmf_trials"]}, qmf_top_k={args["qmf_top_k"]}: QMF needs 2 or more of each'
        )
    if args['mode'] in CHECKPOINT_MODES:
        check_checkpoint_mode(args)


def check_checkpoint_mode(args):
    """What a mode that uses a trained model needs: the checkpoint, one process, and its inputs (the
    files of mode=verify, read from their headers: a missing or empty one stops here)."""
    if not args['checkpoint']:
        raise ArgumentError(f'checkpoint is not set: mode={args["mode"]} needs the last.pt / best.pt of a run')
    if args['mode'] in SINGLE_PROCESS_MODES and distributed.launched_as_job() and int(os.environ['WORLD_SIZE']) > 1:
        raise ArgumentError(f'mode={args["mode"]} runs in one process: start it with python main.py, not torchrun')
    if args['mode'] == 'embed':
        if not args['wav_list']:
            raise ArgumentError('wav_list is not set: mode=embed needs a list of audio files (one a line) or a folder')
        check_inputs(args['wav_list'])
    if args['mode'] == 'verify':
        read_threshold(args)
        check_pair(args)


def check_paths(args):
    """Fails before anything is written when a dataset path is missing or is not a folder."""
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


def find_last_checkpoint(args):
    """resume=auto: the newest last.pt among the run folders of this project and name, or None."""
    folders = run_folders(args['path_log'], args['project'], args['name'])
    found = [path for path in (os.path.join(folder, 'last.pt') for folder in folders) if os.path.isfile(path)]
    return max(found, key=os.path.getmtime) if found else None


def resolve_arguments(argv):
    """(args, the loaded checkpoint to resume or evaluate, or None). A resumed run takes its settings
    from its checkpoint (the command line may change the machine's settings, not the experiment);
    mode=evaluate takes the model and data settings of its checkpoint, overridden by the command line."""
    args, overrides = parse(argv)
    if args['resume'] and args['mode'] == 'train':
        path = find_last_checkpoint(args) if args['resume'] == 'auto' else args['resume']
        if path is None:
            print(
                f'resume=auto: no last.pt of a run named {args["name"]!r} under {args["path_log"]}; starting a new run',
                flush=True,
            )
            return args, None
        state = load_checkpoint(path, 'resume')
        saved = state['args']
        changed = sorted(key for key in overrides if key in EXPERIMENT_ARGS and overrides[key] != saved.get(key))
        if changed:
            kept = ', '.join(f'{key}={saved.get(key)!r}' for key in changed)
            raise ArgumentError(
                f'resume continues a run with its own settings: {", ".join(changed)} cannot change '
                f'(the run has {kept}); start a new run to change them'
            )
        args = {**args, **saved, **overrides, 'resume': path}
        return given_data(args, overrides), state
    if args['mode'] in CHECKPOINT_MODES and args['checkpoint']:
        state = load_checkpoint(args['checkpoint'])
        args = {**args, **state['args'], **overrides, 'mode': args['mode'], 'resume': None}
        return given_data(args, overrides), state
    return args, None


def given_data(args, overrides):
    """A checkpoint of a demo run carries demo=True, which would point every dataset path at the
    demo corpus again: a dataset path on the command line turns that off, so the paths given are
    the ones used (the others are the checkpoint's)."""
    if args.get('demo') and any(key in overrides for key in DATASET_PATHS):
        return {**args, 'demo': False}
    return args


def demo_corpus(args):
    """The dataset paths of the embedded demo corpus, made once into path_cache by rank 0. The
    corpus is data: the same for every seed, so runs of several seeds share its trials."""
    root = os.path.join(args['path_cache'], 'demo')
    sizes = {'num_test_speakers': args['demo_test_speakers'], 'num_vox1_o_speakers': args['demo_test_speakers'] // 2}
    if distributed.is_main():
        print(f'embedded demo: corpus under {root} (generated on the first run, about 30 s)', flush=True)
        prepare_demo(root, **sizes)
    distributed.barrier()
    return prepare_demo(root, **sizes)


def prepare(args):
    """Checks the settings, then makes what the demo needs: its corpus, and the shipped teacher's
    folder in place of model_name_or_path=demo-teacher. Returns (the run's Settings, which nothing
    changes from here on; the lines the run's log should carry)."""
    check_values(args)
    if args['mode'] in SINGLE_PROCESS_MODES:
        return Settings(args), []  # a model and the user's files: no dataset
    derived = demo_corpus(args) if args['demo'] else {}
    check_paths({**args, **derived})
    notes = []
    if args['model_name_or_path'] == TEACHER_NAME:
        derived['model_name_or_path'] = str(SHIPPED)
        notes.append(describe_teacher(os.path.join(SHIPPED, RECORD)))
    return Settings({**args, **derived}), notes


def processes_to_start(args):
    """How many processes plain `python main.py` starts: one per usable GPU (1 under torchrun or on CPU)."""
    if distributed.launched_as_job() or args['mode'] in SINGLE_PROCESS_MODES:
        return 1
    if args['usable_gpu']:
        os.environ['CUDA_VISIBLE_DEVICES'] = args['usable_gpu']  # before anything asks CUDA
    return 1 if device_type(args['device']) == 'cpu' else max(torch.cuda.device_count(), 1)


def run(args, state):
    """One process of the job (the only one on CPU): join the job, then train or evaluate."""
    device = distributed.init(device_type(args['device']))
    if not distributed.is_main():
        quiet_libraries()
    args, notes = prepare(args)
    logger = build_logger(args, state)
    logger.log_parameter(args)
    for note in notes:
        logger.log_text(note)
    if args['mode'] in SINGLE_PROCESS_MODES:
        logger.log_text(
            f'device {device}; mode={args["mode"]} with checkpoint={args["checkpoint"]} (epoch {state["epoch"]})'
        )
    else:
        logger.log_text(
            f'device {device} x {distributed.world_size()} process(es) on {distributed.machines()} machine(s); '
            f'{"embedded demo corpus" if args["demo"] else "dataset"} '
            f'train={args["path_train"]} test={args["path_test"]}'
        )
    failed = True
    try:
        if args['mode'] in CHECKPOINT_MODES:
            results = CHECKPOINT_MODES[args['mode']](args, logger, device, state)
        else:
            results = train(args, logger, device, state)
        if results is not None:
            logger.log_text(f'results: { {k: v for k, v in results.items() if k not in ("params", "performance")} }')
        failed = False
    except Exception as error:
        logger.log_text(f'stopped: {user_message(error)}')
        raise
    finally:
        logger.finish(failed)
    distributed.shutdown()


def build_logger(args, state):
    """The run folder (the resumed run's own, when resuming), TensorBoard, and wandb / neptune where
    their user is set; rank 0 only."""
    resumed = args['mode'] == 'train' and state
    run_dir = os.path.dirname(os.path.abspath(args['resume'])) if resumed else None
    builder = (
        LogModuleController.Builder(args['name'], args['project'])
        .tags(args['tags'].split(','))
        .description(args['description'])
        .save_source_files(PROJECT_ROOT)
        .use_local(args['path_log'], run_dir, saved_at(state) if resumed else None)
        .log_checkpoints(args['log_checkpoints'])
    )
    if args['tensorboard']:
        builder.use_tensorboard()
    if args['wandb_user']:
        builder.use_wandb(args['wandb_user'], args['wandb_token'], args['wandb_project'], args['wandb_mode'])
    if args['neptune_user']:
        builder.use_neptune(args['neptune_user'], args['neptune_token'], args['neptune_project'], args['neptune_mode'])
    return builder.build(rank=distributed.rank())


def saved_at(state):
    """When a checkpoint was saved: the metrics logged after it are dropped from its run's metrics.jsonl
    (a checkpoint of an earlier version carries its metric records instead)."""
    if 'saved_at' in state:
        return state['saved_at']
    return max((record['time'] for record in state.get('metrics', [])), default=0.0)


def quiet_libraries():
    """Ranks other than 0 print nothing but errors."""
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings('ignore')


def main(argv):
    if argv[:1] in (['help'], ['--help'], ['-h']):
        print(describe(argv[1:]))
        return
    args, state = resolve_arguments(argv)
    processes = processes_to_start(args)
    if processes == 1:
        run(args, state)
        return
    prepare(args)  # the checks and the corpus once, before any process starts
    print(f'starting {processes} processes, one per GPU', flush=True)
    distributed.spawn(run_reporting_errors, processes, args, state)


def run_reporting_errors(args, state):
    """run() in a spawned process: a user's error ends it with the one line naming what to fix."""
    try:
        run(args, state)
    except USER_ERRORS as error:
        sys.exit(f'error: {user_message(error)}')


def user_message(error):
    """The one line that names what to fix; errors raised in a data-loading worker arrive wrapped
    in its traceback, whose last line is the original message."""
    lines = str(error).strip().splitlines()
    return re.sub(r'^[\w.]+(Error|Exception|Diverged): ', '', lines[-1]) if lines else type(error).__name__


if __name__ == '__main__':
    try:
        main(sys.argv[1:])
    except USER_ERRORS as error:
        sys.exit(f'error: {user_message(error)}')
    except ProcessExitedException:
        sys.exit(1)  # a spawned process printed its error and stopped; the others were stopped
