"""The training run, top to bottom: set-up, the stages and their epochs, the steps of an epoch, the
evaluation that chooses the best epoch, checkpoints, signals, and the final scores.

    train(args, logger, device, resume)
      set-up: data, teacher, model, precision; a resumed run takes back its TrainState
      for each epoch of each stage (a stage starts with a fresh optimizer and LR schedule):
        train_epoch: one optimizer step per batch; non-finite steps skipped; losses and telemetry
                     read once per log_interval; last.pt every checkpoint_minutes; a SIGTERM /
                     SIGINT saves and stops at the next step
        end of the epoch: losses logged, the choosing list scored, the best model kept, last.pt
                          (and best.pt on an improvement)
      the best weights put back, every trial list scored, results.json

The run's progress and its checkpoints (save, restore) are trainer/state.py's; what it logs as it
goes, trainer/report.py's; what it is built from, trainer/parts.py's.

Every decision that changes what the processes do next (skip this step, save, stop) is taken from
flags combined over all ranks, so every rank takes it at the same step. The trainer is handed its
logger; only rank 0's writes anything.
"""

import math
import os
import signal
import time
from dataclasses import dataclass, field
from functools import partial

import torch

from data.datasets import TrainSet
from data.voxceleb import class_weights, training_manifest
from evaluation.evaluate import EmbeddingRecipe, evaluate, trial_utterances
from evaluation.results import final_evaluation, lmft_evaluation, log_evaluation
from evaluation.trials import load_trial_lists
from models.build import build_model, parameter_counts
from models.ssl import load_teacher, preprocessor_normalizes
from trainer.methods import METHODS, locate
from trainer.parts import (
    amp_dtype,
    build_optimizer,
    build_train_loader,
    distribute,
    set_group_lrs,
    set_lrs,
    stage_loader,
    steps_before,
)
from trainer.report import log_training, loss_means, report_interval, stopped
from trainer.schedule import Schedule
from trainer.state import TrainState, copy_weights, restore, save, save_calibration
from utils import distributed
from utils.progress import progress_bar
from utils.seed import seed_everything
from utils.telemetry import Telemetry

# best_model: the list whose EER after each epoch chooses the best epoch (None: the last epoch)
BEST_MODELS = {'vox1_o': 'Vox1-O', 'val': 'Val', 'last': None}
THRESHOLD_LIST = 'Vox1-O'  # best_model=last: mode=verify's threshold is this list's EER point
TEST_LISTS = ('Vox1-O', 'Vox1-E', 'Vox1-H')
SUFFIX = {False: '', True: '-lmft'}  # the scores files of LMFT's model: <list>-lmft


class TrainingDiverged(Exception):
    """Too many non-finite steps in a row: the run was saved and stopped."""


@dataclass
class Job:
    """What the steps of an epoch use. model is the (DDP-wrapped) SpeakerNet; the optimizer is
    replaced when a stage starts."""

    model: torch.nn.Module
    teacher: torch.nn.Module
    loader: torch.utils.data.DataLoader
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype  # None: full precision
    args: dict
    device: torch.device
    logger: object
    telemetry: Telemetry = field(default_factory=lambda: Telemetry(enabled=False))
    stages: tuple = None  # the method's stages; None: those of args['method']
    steps_before: int = 0  # optimizer steps of the run's epochs before the one in progress

    def __post_init__(self):
        if self.stages is None:
            self.stages = METHODS[self.args['method']].stages(self.args)


class StopSignal:
    """Remembers a SIGTERM / SIGINT instead of dying: the loop finishes its step, saves and stops."""

    def __init__(self):
        self.received = None
        self.previous = {}

    def __enter__(self):
        for number in (signal.SIGTERM, signal.SIGINT):
            self.previous[number] = signal.signal(number, self.handle)
        return self

    def handle(self, number, frame):
        self.received = signal.Signals(number).name

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)


def train(args, logger, device, resume=None):
    """The whole run, or its continuation from `resume` (a loaded last.pt). Returns the results,
    or None when a stop signal ended it (last.pt saved)."""
    # --- set-up: data, teacher, model, precision
    seed_everything(args['seed'])
    manifest = training_manifest(args, logger)
    trial_lists = load_trial_lists(args, logger, manifest)
    method = METHODS[args['method']]
    stages = method.stages(args)
    loader = build_train_loader(args, manifest, device, stages[0])
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
    schedule = Schedule.of(args)
    if not method.uses_teacher:
        teacher = None  # copied into the student; without KD it never runs
    if args['compile']:
        raw_model.student.compile()
        raw_model.backend.compile()
    dtype = amp_dtype(args['amp'], device)
    job = Job(
        distribute(raw_model, device, stages),
        teacher,
        loader,
        build_optimizer(raw_model),
        torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),
        dtype,
        args,
        device,
        logger,
        Telemetry(device, num_workers=loader.num_workers, batch_size=args['batch_size']),
        stages,
    )
    state = TrainState(bad_files=list(manifest.unreadable))
    meta = {'num_classes': num_classes, 'params': params}  # parameter counts: for results.json
    seed_everything(args['seed'] + distributed.rank())
    logger.log_text(
        f'method {method.name}: {method.summary}; {method.epochs(args)} epochs; '
        f'{len(manifest.paths)} training utterances of {num_classes} speakers; parameters {params}; '
        f'augmentation {"on" if loader.dataset.augment else "off (no path_musan / path_rir)"}; '
        f'precision {dtype or torch.float32}; batch {args["batch_size"]} = {distributed.world_size()} '
        f'x {loader.batch_sampler.per_rank}'
    )
    chooser = BEST_MODELS[args['best_model']]
    recipe = EmbeddingRecipe.of(args)
    tuning = {name: trials for name, trials in trial_lists.items() if name == chooser}
    scored = [epoch for epoch in range(1, method.epochs(args) + 1) if tuning and stages[locate(stages, epoch)[0]].sv]
    final_scale = len(trial_utterances(trial_lists)) / len(trial_utterances(tuning)) if tuning else 0.0
    job.telemetry.plan(method.epochs(args), scored, final_scale)  # what the run's ETA counts
    best_weights = lmft_weights = None  # the best model of the method's stages, of LMFT's
    with StopSignal() as stop:  # from here on a SIGTERM / SIGINT saves and stops at the next step
        if resume:
            state, best_weights, lmft_weights = restore(job, resume, os.path.dirname(os.path.abspath(args['resume'])))
        elif tuning:
            logger.log_text(f'best_model={args["best_model"]}: {chooser} is scored after every epoch and chooses')
        elif args['best_model'] == 'last':
            logger.log_text('best_model=last: the last epoch is kept; the lists are scored after it')
        else:
            logger.log_text(f'no {chooser} list: the last epoch is kept as the best model')

        checkpoint = partial(save, job, state, meta)  # last.pt; also='best.pt' / 'lmft.pt': that too

        # --- the stages and their epochs
        for epoch in range(state.epoch + 1, method.epochs(args) + 1):
            index, stage_epoch = locate(stages, epoch)
            stage = stages[index]
            if index > 0 and stage_epoch == 1 and state.step == 0:  # a new stage starts as a new run would
                if stage.lmft:  # LMFT: from the best model of the stages before
                    if best_weights is None:  # none improved: their last epoch stands as their best, in best.pt
                        state.best['epoch'] = state.epoch
                        best_weights = copy_weights(raw_model)
                        checkpoint(also='best.pt')
                    raw_model.load_state_dict(best_weights)
                job.optimizer = build_optimizer(raw_model)
                logger.log_text(
                    f'epoch {epoch}: the next stage of {method.name} starts, optimizer state reset'
                    + (f'; LMFT from the best model (epoch {state.best["epoch"]})' if stage.lmft else '')
                )
            job.loader = stage_loader(job.loader, stage, args, manifest, device)
            raw_model.head.set_margin(args['aam_margin'] if stage.margin is None else stage.margin)
            lrs = set_lrs(job.optimizer, stage_epoch, schedule, stage, job.loader.batch_sampler.steps_per_epoch)
            job.loader.batch_sampler.set_epoch(epoch, state.step)
            job.loader.dataset.set_epoch(epoch)
            job.steps_before = steps_before(stages, epoch, len(manifest.paths), args)
            if not train_epoch(job, epoch, state, stop, checkpoint):
                return stopped(logger, stop, epoch - 1, state.step)

            # --- the end of the epoch: logs, the choosing list, the best model, checkpoints
            prefix = 'lmft/' if stage.lmft else ''  # LMFT's epochs: their own curves
            losses = loss_means(distributed.sum_over_ranks(state.sums.to(device)))
            log_training(logger, epoch, lrs, losses, prefix)
            steps = job.loader.batch_sampler.steps_per_epoch
            logger.log_metric('train/skipped_steps', state.skipped, job.steps_before + steps)
            if state.skipped:
                logger.log_text(
                    f'epoch {epoch}: {state.skipped} steps skipped (non-finite loss or gradients, '
                    f'or fp16 overflow while the loss scale settles); the means are over the others'
                )
            eer = threshold = float('nan')
            if tuning and stage.sv:
                with job.telemetry.timed_evaluation(tuning=True):
                    results = evaluate(raw_model, tuning, args['path_test'], recipe, device, distributed.is_main())
                log_evaluation(logger, results, epoch, prefix + 'eval')
                eer, threshold = results[chooser]['eer'], results[chooser]['eer_threshold']
            improved = improves(eer, (state.lmft_best if stage.lmft else state.best)['eer']) if tuning else stage.sv
            if improved:
                best = {'epoch': epoch, 'eer': eer, 'threshold': threshold}
                if tuning:
                    best['list'] = chooser
                    best['results'] = {key: value for key, value in results[chooser].items() if key != 'scores'}
                    trials = tuning[chooser]
                    scores = results[chooser]['scores']
                    logger.save_scores(chooser + SUFFIX[stage.lmft], trials.enroll, trials.test, trials.labels, scores)
                weights = copy_weights(raw_model)
                if stage.lmft:
                    state.lmft_best, lmft_weights = best, weights
                else:
                    state.best, best_weights = best, weights
            logger.end_epoch()
            state.next_epoch()
            checkpoint(also=('lmft.pt' if stage.lmft else 'best.pt') if improved else None)
            if distributed.any_rank(torch.tensor([stop.received is not None], device=device)).item():
                return stopped(logger, stop, epoch, 0)

    # --- the final scores, with the best model
    if best_weights is None:
        logger.log_text(f'no epoch improved on {chooser}: the last weights are scored')
    else:
        raw_model.load_state_dict(best_weights)
    chosen = f'{chooser} EER {state.best["eer"]:.3f} %' if tuning else 'the last'
    logger.log_text(f'best epoch {state.best["epoch"]} ({chosen}); scoring every trial list')
    kept, lists = still_to_score(trial_lists, chooser, state.best, args)
    summary, calibration = final_evaluation(
        raw_model,
        lists,
        args,
        device,
        logger,
        state.best['epoch'] or state.epoch,
        params,
        job.telemetry,
        manifest,
        kept,
    )
    if not tuning and THRESHOLD_LIST in summary:  # best_model=last: mode=verify's threshold, measured now
        state.best.update(
            eer=summary[THRESHOLD_LIST]['eer'], threshold=summary[THRESHOLD_LIST]['eer_threshold'], list=THRESHOLD_LIST
        )
        checkpoint(also='best.pt')
    if calibration is not None:
        save_calibration(logger, calibration, state.best['epoch'] or state.epoch, 'best.pt')
    if lmft_weights is not None:  # --- LMFT's model, scored the same way into results.json's 'lmft'
        raw_model.load_state_dict(lmft_weights)
        logger.log_text(f'LMFT: its best epoch {state.lmft_best["epoch"]}; scoring every trial list')
        kept, lists = still_to_score(trial_lists, chooser, state.lmft_best, args)
        _, lmft_calibration = lmft_evaluation(
            raw_model, lists, args, device, logger, state.lmft_best['epoch'], summary, job.telemetry, manifest, kept
        )
        if not tuning and THRESHOLD_LIST in summary['lmft']:
            lmft = summary['lmft'][THRESHOLD_LIST]
            state.lmft_best.update(eer=lmft['eer'], threshold=lmft['eer_threshold'], list=THRESHOLD_LIST)
            checkpoint(also='lmft.pt')
        if lmft_calibration is not None:
            save_calibration(logger, lmft_calibration, state.lmft_best['epoch'], 'lmft.pt')
    return summary


def still_to_score(trial_lists, chooser, best, args):
    """(kept, the lists left to score): a validation list that chose the best epoch was scored with
    these very weights, so its results are kept as they are (unless AS-norm or QMF, which that
    scoring did not run, are on)."""
    kept = {}
    if chooser not in TEST_LISTS and 'results' in best and not args['asnorm_top_k'] and not args['qmf']:
        kept = {chooser: best['results']}
    return kept, {name: trials for name, trials in trial_lists.items() if name not in kept}


def train_epoch(job, epoch, state, stop, save_last):
    """Continues epoch `epoch` (1-based) from state.step to its end, updating state. Returns False
    when a stop signal ended it early (after save_last()), True at the epoch's end. last.pt is also
    saved every checkpoint_minutes."""
    args, device = job.args, job.device
    index, stage_epoch = locate(job.stages, epoch)
    stage = job.stages[index]
    job.model.train()
    sums = state.sums.to(device)
    reported = sums.clone()  # the sums at the last interval's report
    steps = state.step + len(job.loader)
    last_save = time.monotonic()
    telemetry = job.telemetry
    telemetry.start_epoch()
    bar = progress_bar(
        telemetry.timed(job.loader),
        f'epoch {epoch}',
        distributed.is_main(),
        total=steps,
        initial=state.step,
        own_eta=not telemetry.enabled,
    )
    for clean, augmented, labels, bad in bar:
        telemetry.count(len(labels))
        clean, augmented = clean.to(device, non_blocking=True), augmented.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        buffers = [buffer.clone() for buffer in job.model.buffers()]  # BatchNorm statistics, put back on a skip
        if stage.lrs is not None:  # a schedule by the step (LMFT's)
            set_group_lrs(job.optimizer, stage.lrs(stage_epoch, state.step, steps))
        with torch.autocast(device.type, dtype=job.amp_dtype, enabled=job.amp_dtype is not None):
            loss, values = stage.step(job.model, job.teacher, clean, augmented, labels, stage_epoch)
        job.optimizer.zero_grad(set_to_none=True)
        job.scaler.scale(loss).backward()
        job.scaler.unscale_(job.optimizer)
        save_due = distributed.is_main() and time.monotonic() - last_save >= args['checkpoint_minutes'] * 60
        flags = torch.stack(
            [
                ~torch.isfinite(values[2]),
                ~torch.isfinite(gradient_norm(job.optimizer)),
                torch.tensor(stop.received is not None, device=device),
                torch.tensor(save_due, device=device),
                torch.tensor(any(bad), device=device),
            ]
        )
        bad_loss, bad_grads, stopping, saving, bad_data = distributed.any_rank(flags).tolist()  # the step's one read
        state.step += 1
        skipped = bad_loss or bad_grads
        # with fp16 loss scaling, gradients that overflow while the loss is finite are the scaler's
        # business: scaler.step skips them itself and the scale is lowered (counted, not reported)
        overflow = bad_grads and not bad_loss and job.scaler.is_enabled()
        if skipped and not overflow:
            for buffer, saved in zip(job.model.buffers(), buffers):
                buffer.copy_(saved)
            job.logger.log_text(
                f'epoch {epoch} step {state.step}: non-finite loss or gradients, step skipped '
                f'({state.bad_in_row + 1} in a row)'
            )
        else:
            job.scaler.step(job.optimizer)
        if skipped:
            state.skipped += 1
            state.bad_in_row += 1
        else:
            sums += torch.cat([values.double(), values.new_ones(1, dtype=torch.float64)])
            state.bad_in_row = 0
        job.scaler.update()
        if state.step % args['log_interval'] == 0:
            report_interval(job, stage.paths(stage_epoch), epoch, state.step, steps, sums, reported, bar)
        if bad_data:
            note_bad_files(job, epoch, state, bad, sums, save_last)
        diverged = state.bad_in_row > args['max_bad_steps']
        if diverged or stopping or saving:
            state.sums = sums.cpu()
            save_last()
            last_save = time.monotonic()
        if diverged:
            raise TrainingDiverged(
                f'{state.bad_in_row} non-finite steps in a row (max_bad_steps='
                f'{args["max_bad_steps"]}) at epoch {epoch} step {state.step}; last.pt holds '
                f'the weights before them: lower lr or change amp, then resume=PATH'
            )
        if stopping:
            return False
    state.sums = sums.cpu()
    telemetry.flush()
    return True


def gradient_norm(optimizer):
    grads = [p.grad for group in optimizer.param_groups for p in group['params'] if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads)


def improves(eer, best_eer):
    """A finite EER below the best so far; an epoch that could not be scored (NaN) never improves."""
    return math.isfinite(eer) and eer < best_eer


def note_bad_files(job, epoch, state, bad, sums, save_last):
    """Names the training files that could not be read in this step on any rank (each was replaced
    by another item), and stops the run, saved, once the run has met more than max_bad_files."""
    met = distributed.gather_objects(TrainSet.bad_paths(bad))
    new = distributed.broadcast_object(
        None if met is None else sorted({path for paths in met for path in paths} - set(state.bad_files))
    )
    if not new:
        return
    state.bad_files.extend(new)
    limit = job.args['max_bad_files']
    job.logger.log_text(
        f'epoch {epoch} step {state.step}: skipped {len(new)} unreadable training file(s), another item '
        f'drawn in place of each ({len(state.bad_files)} in this run, max_bad_files={limit}): '
        f'{", ".join(new)}'
    )
    if len(state.bad_files) > limit:
        state.sums = sums.cpu()
        save_last()
        raise ValueError(
            f'path_train: {len(state.bad_files)} training files cannot be read (more than max_bad_files='
            f'{limit}), the first: {", ".join(state.bad_files[:3])}; the log names every one. Repair or '
            f'remove them (or raise max_bad_files), then resume=PATH of last.pt'
        )
