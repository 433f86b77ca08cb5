"""The experiment: build the models and data, train with OS-KDFT, keep the best model by the EER
of the list that chooses it (Vox1-O as the paper did, or a validation list), and score every list
with it at the end; in one process or many, resumable from any checkpoint."""

import math
import os

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from data.audio import FRAME_SAMPLES
from data.augment import Augmenter
from data.datasets import TrainSet
from data.sampler import GlobalBatchSampler
from data.voxceleb import class_weights, training_manifest
from evaluation.evaluate import evaluate, trial_utterances
from evaluation.results import final_evaluation, log_evaluation
from evaluation.trials import load_trial_lists
from models.build import build_model, parameter_counts
from models.ssl import load_teacher, preprocessor_normalizes
from trainer.loop import EpochState, Job, StopSignal, global_step, loss_means, train_epoch
from trainer.methods import METHODS
from trainer.run import Run
from trainer.schedule import group_lrs
from utils import distributed
from utils.seed import seed_everything
from utils.telemetry import Telemetry

# best_model: the list whose EER after each epoch chooses the best epoch (None: the last epoch)
BEST_MODELS = {'vox1_o': 'Vox1-O', 'val': 'Val', 'last': None}
THRESHOLD_LIST = 'Vox1-O'  # best_model=last: mode=verify's threshold is this list's EER point
TEST_LISTS = ('Vox1-O', 'Vox1-E', 'Vox1-H')
AMP_DTYPES = {'none': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def build_optimizer(model):
    """One Adam for the whole run (its moments are never reset); the LR of each named group is
    set every epoch by the schedule."""
    groups = [
        {'name': name, 'params': trained, 'lr': 0.0}
        for name, params in model.parameter_groups().items()
        if (trained := [param for param in params if param.requires_grad])
    ]  # no adapter group without adapters, no student group with a frozen SSL model
    return torch.optim.Adam(groups, weight_decay=0.0)


def set_lrs(optimizer, epoch, args):
    """Each group's LR for the epoch, as the method's stage sees it; the values, for the log."""
    lrs = group_lrs(METHODS[args['method']].stage_epoch(epoch, args), args)
    lrs = {name: lr for name, lr in lrs.items() if name in {group['name'] for group in optimizer.param_groups}}
    for group in optimizer.param_groups:
        group['lr'] = lrs[group['name']]
    return lrs


def build_train_loader(args, manifest, device):
    """This process's share of every global batch; its own generator, so that starting the loader
    (at an epoch's start, or mid-epoch after a resume) draws nothing from the global random state."""
    augment = None
    if args['path_musan']:
        augment = Augmenter(args['path_musan'], args['path_rir'], args['aug_p'], args['clip_p'], args['ease_p'])
    dataset = TrainSet(manifest.paths, manifest.labels, args['num_train_frames'] * FRAME_SAMPLES, augment, args['seed'])
    sampler = GlobalBatchSampler(
        len(dataset), args['batch_size'], distributed.rank(), distributed.world_size(), args['seed']
    )
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=distributed.data_workers(args['num_workers']),
        pin_memory=device.type == 'cuda',
        generator=torch.Generator(),
    )


def amp_dtype(args, device):
    """amp=auto: bf16 on a GPU that has it, full precision otherwise."""
    if args['amp'] == 'auto':
        return torch.bfloat16 if device.type == 'cuda' and torch.cuda.is_bf16_supported() else None
    return AMP_DTYPES[args['amp']]


def distribute(model, device, args):
    """DDP over the job's processes (the model itself in one process)."""
    if distributed.world_size() == 1:
        return model
    return DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == 'cuda' else None,
        find_unused_parameters=some_steps_leave_parameters_out(model, args),
    )


def some_steps_leave_parameters_out(model, args):
    """Whether a step can leave parameters without a gradient, which DDP then has to look for
    (find_unused_parameters) and counts as zero in the average: LayerDrop skips layers at random,
    on each rank its own; a KD-only epoch (kd_ft's first stage) leaves out the back-end."""
    layerdrop = getattr(model.student.ssl.config, 'layerdrop', 0.0)
    method = METHODS[args['method']]
    return layerdrop > 0 or any(not method.scored(epoch, args) for epoch in range(1, method.epochs(args) + 1))


def log_training(logger, epoch, lrs, losses):
    for name, value in lrs.items():
        logger.log_metric(f'lr/{name}', value, epoch)
    for name in ('kd', 'sv', 'total'):
        logger.log_metric(f'loss/{name}', losses[name], epoch)
    logger.log_text(
        f'epoch {epoch}: loss/kd {losses["kd"]:.4f} loss/sv {losses["sv"]:.4f} accuracy {losses["accuracy"]:.1f} %'
    )


def train(args, logger, device, resume=None):
    """The whole OS-KDFT run, or its continuation from `resume` (a loaded last.pt). Returns the
    results, or None when a stop signal ended it (last.pt saved)."""
    seed_everything(args['seed'])
    manifest = training_manifest(args, logger)
    trial_lists = load_trial_lists(args, logger, manifest)
    loader = build_train_loader(args, manifest, device)
    teacher = load_teacher(args['model_name_or_path'], args['tiny_ssl']).to(device)
    if preprocessor_normalizes(args['model_name_or_path']) and not args['normalize_wave']:
        logger.log_text(
            f'{args["model_name_or_path"]}: its preprocessor normalises waves (do_normalize) and '
            f'normalize_wave is off, as in the original code; normalize_wave=true feeds it as pre-trained'
        )
    num_classes = len(manifest.speakers)
    weights = torch.from_numpy(class_weights(manifest.labels, num_classes)) if args['class_weight'] else None
    raw_model = build_model(args, teacher, num_classes, weights).to(device)
    params = parameter_counts(teacher, raw_model)
    method = METHODS[args['method']]
    if not method.USES_TEACHER:
        teacher = None  # copied into the student; without KD it never runs
    if args['compile']:
        raw_model.student.compile()
        raw_model.backend.compile()
    dtype = amp_dtype(args, device)
    job = Job(
        distribute(raw_model, device, args),
        teacher,
        loader,
        build_optimizer(raw_model),
        torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),
        dtype,
        args,
        device,
        logger,
        bad_files=list(manifest.unreadable),
        telemetry=Telemetry(device, num_workers=loader.num_workers, batch_size=args['batch_size']),
    )
    run = Run(job, raw_model, num_classes, params)
    seed_everything(args['seed'] + distributed.rank())
    logger.log_text(
        f'method {args["method"]}: {method.__doc__.split(":")[0]}; {method.epochs(args)} epochs; '
        f'{len(manifest.paths)} training utterances of {num_classes} speakers; parameters {params}; '
        f'augmentation {"on" if loader.dataset.augment else "off (no path_musan / path_rir)"}; '
        f'precision {dtype or torch.float32}; batch {args["batch_size"]} = {distributed.world_size()} '
        f'x {loader.batch_sampler.per_rank}'
    )

    show = distributed.is_main()
    chooser = BEST_MODELS[args['best_model']]
    tuning = {name: trials for name, trials in trial_lists.items() if name == chooser}
    plan_run(job.telemetry, method, args, tuning, trial_lists)
    with StopSignal() as stop:  # from here on a SIGTERM / SIGINT saves and stops at the next step
        if resume:
            run.restore(resume, os.path.dirname(os.path.abspath(args['resume'])))
        elif tuning:
            logger.log_text(f'best_model={args["best_model"]}: {chooser} is scored after every epoch and chooses')
        elif args['best_model'] == 'last':
            logger.log_text('best_model=last: the last epoch is kept; the lists are scored after it')
        else:
            logger.log_text(f'no {chooser} list: the last epoch is kept as the best model')
        for epoch in range(run.epoch + 1, method.epochs(args) + 1):
            if method.new_stage(epoch, args) and run.state.step == 0:
                job.optimizer.state.clear()  # a new stage starts as a new run would
                logger.log_text(f'epoch {epoch}: the next stage of {args["method"]} starts, optimizer state reset')
            lrs = set_lrs(job.optimizer, epoch, args)
            loader.batch_sampler.set_epoch(epoch, run.state.step)
            loader.dataset.set_epoch(epoch)
            if not train_epoch(job, epoch, run.state, stop, run.save):
                return stopped(logger, stop, epoch - 1, run.state.step)
            end_epoch(run, epoch, lrs, tuning, show)
            if distributed.any_rank(torch.tensor([stop.received is not None], device=device)).item():
                return stopped(logger, stop, epoch, 0)

    if run.best_weights is None:
        logger.log_text(f'no epoch improved on {chooser}: the last weights are scored')
    else:
        raw_model.load_state_dict(run.best_weights)
    chosen = f'{chooser} EER {run.best["eer"]:.3f} %' if tuning else 'the last'
    logger.log_text(f'best epoch {run.best["epoch"]} ({chosen}); scoring every trial list')
    # a validation list that chose the epoch was scored with these very weights: its scores are kept
    kept = {}
    if chooser not in TEST_LISTS and 'results' in run.best and not args['asnorm_top_k']:
        kept = {chooser: run.best['results']}
    lists = {name: trials for name, trials in trial_lists.items() if name not in kept}
    summary = final_evaluation(
        raw_model, lists, args, device, logger, run.best['epoch'] or run.epoch, params, job.telemetry, manifest, kept
    )
    if not tuning and THRESHOLD_LIST in summary:  # best_model=last: mode=verify's threshold, measured now
        run.best.update(
            eer=summary[THRESHOLD_LIST]['eer'], threshold=summary[THRESHOLD_LIST]['eer_threshold'], list=THRESHOLD_LIST
        )
        run.save(best_too=True)
    return summary


def plan_run(telemetry, method, args, tuning, trial_lists):
    """What the run's ETA counts after the epoch in progress: the epochs left, an evaluation of the
    choosing list after each scored one, and the final evaluation, as many of those as its
    utterances are the choosing list's (the time of one measured after every scored epoch)."""
    scored = [epoch for epoch in range(1, method.epochs(args) + 1) if tuning and method.scored(epoch, args)]
    final_scale = len(trial_utterances(trial_lists)) / len(trial_utterances(tuning)) if tuning else 0.0
    telemetry.plan(method.epochs(args), scored, final_scale)


def end_epoch(run, epoch, lrs, tuning, show):
    """The epoch's logs, the choosing list's score, the best model, and last.pt (best.pt on an improvement)."""
    job = run.job
    log_training(job.logger, epoch, lrs, loss_means(distributed.sum_over_ranks(run.state.sums.to(job.device))))
    steps = job.loader.batch_sampler.steps_per_epoch
    job.logger.log_metric('train/skipped_steps', run.state.skipped, global_step(epoch, steps, steps))
    if run.state.skipped:
        job.logger.log_text(
            f'epoch {epoch}: {run.state.skipped} steps skipped (non-finite loss or gradients, '
            f'or fp16 overflow while the loss scale settles); the means are over the others'
        )
    eer = threshold = float('nan')
    scored = METHODS[job.args['method']].scored(epoch, job.args)
    if tuning and scored:
        with job.telemetry.timed_evaluation(tuning=True):
            results = evaluate(run.raw_model, tuning, job.args['path_test'], job.args, job.device, show)
        log_evaluation(job.logger, results, epoch)
        (chooser,) = tuning
        eer, threshold = results[chooser]['eer'], results[chooser]['eer_threshold']
    improved = improves(eer, run.best['eer']) if tuning else scored
    if improved:
        run.best = {'epoch': epoch, 'eer': eer, 'threshold': threshold}  # threshold: mode=verify's
        if tuning:
            run.best['list'] = chooser
            run.best['results'] = {key: value for key, value in results[chooser].items() if key != 'scores'}
            trials = tuning[chooser]
            job.logger.save_scores(chooser, trials.enroll, trials.test, trials.labels, results[chooser]['scores'])
        run.best_weights = {name: tensor.detach().cpu().clone() for name, tensor in run.raw_model.state_dict().items()}
    job.logger.end_epoch()
    run.epoch, run.state = epoch, EpochState()
    run.save(best_too=improved)


def improves(eer, best_eer):
    """A finite EER below the best so far; an epoch that could not be scored (NaN) never improves."""
    return math.isfinite(eer) and eer < best_eer


def stopped(logger, stop, epoch, step):
    launcher = (
        f'torchrun --nproc_per_node={distributed.world_size()} main.py'
        if 'TORCHELASTIC_RUN_ID' in os.environ
        else 'python main.py'
    )
    logger.log_text(
        f'{stop.received}: stopped after epoch {epoch} and {step} steps of the next; last.pt saved. '
        f'Continue with: {launcher} resume={os.path.join(logger.run_dir, "last.pt")}'
    )
    return None
