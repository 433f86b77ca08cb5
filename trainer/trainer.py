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
from data.datasets import TrainSet, resolve_test_files
from data.sampler import GlobalBatchSampler
from data.voxceleb import (
    OFFICIAL_TRIAL_FILES,
    class_weights,
    identify_voxceleb,
    random_subset,
    read_trials,
    scan_voxceleb,
)
from models.aam import AAMSoftmax
from models.ecapa import EcapaTdnn
from models.speaker_net import SpeakerNet
from models.ssl import count_parameters, load_teacher, preprocessor_normalizes
from models.student import Student
from trainer.evaluate import evaluate, training_cohort, trial_utterances
from trainer.methods import METHODS
from trainer.loop import EpochState, Job, StopSignal, global_step, loss_means, train_epoch
from trainer.run import Run
from trainer.schedule import group_lrs
from trainer.telemetry import Telemetry, summary_text
from utils import distributed
from utils.seed import seed_everything

TRIAL_LISTS = {'Vox1-O': 'trials_vox1_o', 'Vox1-E': 'trials_vox1_e', 'Vox1-H': 'trials_vox1_h', 'Val': 'trials_val'}
# best_model: the list whose EER after each epoch chooses the best epoch (None: the last epoch)
BEST_MODELS = {'vox1_o': 'Vox1-O', 'val': 'Val', 'last': None}
THRESHOLD_LIST = 'Vox1-O'  # best_model=last: mode=verify's threshold is this list's EER point
TEST_LISTS = ('Vox1-O', 'Vox1-E', 'Vox1-H')
AMP_DTYPES = {'none': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def build_model(args, teacher, num_classes, weights=None, ssl_config=None):
    """Student (copied from the teacher: as many layers as the method keeps, with adapters where it
    has them) + ECAPA-TDNN sized from the SSL width + AAM-softmax. With ssl_config (a checkpoint's,
    see Run.checkpoint) the student is built from its own config instead, teacher None, its weights
    random until the checkpoint's are loaded."""
    method = METHODS[args['method']]
    num_layers = method.student_layers(args, teacher) if ssl_config is None else None
    student = Student(
        teacher,
        num_layers,
        args['adapter_bottleneck'],
        args['adapter_scale'],
        args['adapter_input_residual'],
        with_adapters=method.ADAPTERS,
        ssl_config=ssl_config,
    )
    backend = EcapaTdnn(
        student.hidden_size,
        args['ecapa_channels'],
        args['embedding_size'],
        args['spec_mask_freq'],
        args['spec_mask_time'],
        args['spec_mask_p'],
    )
    head = AAMSoftmax(args['embedding_size'], num_classes, args['aam_margin'], args['aam_scale'], weights)
    frozen = getattr(method, 'FROZEN_SSL', False)
    return SpeakerNet(student, backend, head, normalize_wave=args['normalize_wave'], frozen_ssl=frozen)


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


def training_manifest(args, logger):
    """The training files and speakers, scanned once into path_cache (rank 0 first, the others then
    read its cache), with what the scan found said in the log: files left out, resampled or
    mixed down, counts unlike the official ones."""

    def scan():
        return scan_voxceleb(args['path_train'], 'path_train', args['path_cache'], args['min_train_seconds'])

    manifest = scan() if distributed.is_main() else None
    distributed.barrier()
    manifest = manifest or scan()
    for note in manifest.notes:
        logger.log_text(note)
    if 0 < args['max_train_files'] < len(manifest.paths):
        manifest = random_subset(manifest, args['max_train_files'], args['seed'])
        logger.log_text(
            f'max_train_files={args["max_train_files"]}: training on a random subset, '
            f'{len(manifest.paths)} files of {len(manifest.speakers)} speakers'
        )
    if len(manifest.unreadable) > args['max_bad_files']:
        raise ValueError(
            f'path_train: {len(manifest.unreadable)} training files cannot be read (more than '
            f'max_bad_files={args["max_bad_files"]}), the first: {", ".join(manifest.unreadable[:3])}; '
            f'repair or remove them, or raise max_bad_files'
        )
    return manifest


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


def log_evaluation(logger, results, epoch, prefix='eval'):
    """Each list's metrics as <prefix>/<list>/<metric> (eval: an epoch's model; final: the best model)."""
    for name, result in results.items():
        log_list(logger, name, result, epoch, prefix)
        if 'asnorm' in result:
            norm = result['asnorm']
            log_list(
                logger,
                f'{name}/asnorm',
                dict(norm, trials=result['trials']),
                epoch,
                prefix,
                f' with AS-norm (top {norm["top_k"]} of {norm["cohort"]} cohort speakers)',
            )


def log_list(logger, name, result, epoch, prefix, how=''):
    if result.get('nonfinite'):
        logger.log_text(
            f'epoch {epoch} {name}: {result["nonfinite"]} of {result["trials"]} scores are not '
            f'finite: not scored, the epoch does not count as an improvement'
        )
        return
    for metric in ('eer', 'min_dcf_0.05', 'min_dcf_0.01'):
        logger.log_metric(f'{prefix}/{name}/{metric}', result[metric], epoch)
    logger.log_text(
        f'epoch {epoch} {name}{how}: EER {result["eer"]:.3f} %, minDCF(0.05) '
        f'{result["min_dcf_0.05"]:.4f}, minDCF(0.01) {result["min_dcf_0.01"]:.4f} '
        f'({result["trials"]} trials)'
    )


def parameter_counts(teacher, model):
    """The sizes results.json reports: the teacher, the deployed student (adapters included) and ECAPA."""
    return {
        'teacher': count_parameters(teacher),
        'student': count_parameters(model.student),
        'backend': count_parameters(model.backend),
    }


def final_evaluation(model, trial_lists, args, device, logger, best_epoch, params, telemetry, manifest=None, kept=None):
    """Scores every trial list with the best model (and with AS-norm against the training speakers
    when asnorm_top_k is set) and writes results.json, the run's performance (telemetry) in it;
    kept: {list: its results} scored already with the same weights (the best epoch's validation list)."""
    show = distributed.is_main()
    cohort = None
    with telemetry.timed_evaluation():
        if args['asnorm_top_k'] and trial_lists:
            logger.log_text(
                f'AS-norm cohort: {len(manifest.speakers)} training speakers, '
                f'{args["asnorm_cohort_utts"]} utterances each'
            )
            cohort = training_cohort(model, manifest, args, device, show)
        results = evaluate(model, trial_lists, args['path_test'], args, device, show, cohort)
    log_evaluation(logger, results, best_epoch, prefix='final')
    summary = dict(kept or {})
    for name, result in results.items():
        trials = trial_lists[name]
        logger.save_scores(name, trials.enroll, trials.test, trials.labels, result.pop('scores'))
        if 'asnorm_scores' in result:
            logger.save_scores(f'{name}-asnorm', trials.enroll, trials.test, trials.labels, result.pop('asnorm_scores'))
        summary[name] = result
    summary['best_epoch'] = best_epoch
    summary['method'] = args['method']
    summary['params'] = params
    summary['performance'] = telemetry.summary()
    if summary['performance'] is not None:
        logger.log_text(summary_text(summary['performance']))
    logger.save_results(summary)
    return summary


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
