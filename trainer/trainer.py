"""The experiment: build the models and data, train with OS-KDFT, keep the best model by
Vox1-O EER, and score Vox1-O / E / H with it at the end."""
import os

import torch
from torch.utils.data import DataLoader, DistributedSampler

from data.audio import FRAME_SAMPLES
from data.augment import Augmenter
from data.datasets import TrainSet, require_files
from data.voxceleb import class_weights, read_trials, scan_voxceleb
from models.aam import AAMSoftmax
from models.ecapa import EcapaTdnn
from models.speaker_net import SpeakerNet
from models.ssl import count_parameters, load_teacher
from models.student import Student
from trainer.evaluate import evaluate, trial_utterances
from trainer.oskdft import train_epoch
from trainer.schedule import group_lrs
from utils import distributed

TRIAL_LISTS = {'Vox1-O': 'trials_vox1_o', 'Vox1-E': 'trials_vox1_e', 'Vox1-H': 'trials_vox1_h'}
MODEL_ARGS = ('model_name_or_path', 'tiny_ssl', 'num_hidden_layers', 'adapter_bottleneck', 'adapter_scale',
              'adapter_input_residual', 'ecapa_channels', 'embedding_size', 'spec_mask_freq', 'spec_mask_time',
              'spec_mask_p', 'aam_margin', 'aam_scale')


def build_model(args, teacher, num_classes, weights=None):
    """Student (copied from the teacher) + ECAPA-TDNN sized from the SSL width + AAM-softmax."""
    student = Student(teacher, args['num_hidden_layers'], args['adapter_bottleneck'], args['adapter_scale'],
                      args['adapter_input_residual'])
    backend = EcapaTdnn(student.hidden_size, args['ecapa_channels'], args['embedding_size'],
                        args['spec_mask_freq'], args['spec_mask_time'], args['spec_mask_p'])
    head = AAMSoftmax(args['embedding_size'], num_classes, args['aam_margin'], args['aam_scale'], weights)
    return SpeakerNet(student, backend, head)


def build_optimizer(model):
    """One Adam for the whole run (its moments are never reset); the LR of each named group is
    set every epoch by the schedule."""
    groups = [{'name': name, 'params': params, 'lr': 0.0} for name, params in model.parameter_groups().items()]
    return torch.optim.Adam(groups, weight_decay=0.0)


def set_lrs(optimizer, epoch, args):
    lrs = group_lrs(epoch, args)
    for group in optimizer.param_groups:
        group['lr'] = lrs[group['name']]
    return lrs


def load_trial_lists(args, logger):
    """The trial lists found in path_trials (one that is not there is left out, and said so),
    checked before any training to name only files that path_test holds."""
    lists = {}
    for name, key in TRIAL_LISTS.items():
        path = os.path.join(args['path_trials'], args[key]) if args['path_trials'] else None
        if path and os.path.isfile(path):
            lists[name] = read_trials(path)
        else:
            logger.log_text(f'{name}: no trial list {path or args[key]!r} ({key} in path_trials), left out')
    require_files(args['path_test'], trial_utterances(lists))
    return lists


def build_train_loader(args, manifest, device):
    world = distributed.world_size()
    if args['batch_size'] % world:
        raise ValueError(f'batch_size={args["batch_size"]} is the total over {world} processes: '
                         f'make it a multiple of {world}')
    augment = None
    if args['path_musan']:
        augment = Augmenter(args['path_musan'], args['path_rir'], args['aug_p'], args['clip_p'], args['ease_p'])
    dataset = TrainSet(manifest.paths, manifest.labels, args['num_train_frames'] * FRAME_SAMPLES, augment,
                       args['seed'])
    sampler = DistributedSampler(dataset, world, distributed.rank(), shuffle=True, seed=args['seed'],
                                 drop_last=True)
    return DataLoader(dataset, batch_size=args['batch_size'] // world, sampler=sampler, drop_last=True,
                      num_workers=args['num_workers'], pin_memory=device.type == 'cuda')


def log_training(logger, epoch, lrs, losses):
    for name, value in lrs.items():
        logger.log_metric(f'lr/{name}', value, epoch)
    for name in ('kd', 'sv', 'total'):
        logger.log_metric(f'loss/{name}', losses[name], epoch)
    logger.log_text(f'epoch {epoch}: loss/kd {losses["kd"]:.4f} loss/sv {losses["sv"]:.4f} '
                    f'accuracy {losses["accuracy"]:.1f} %')


def log_evaluation(logger, results, epoch):
    for name, result in results.items():
        for metric in ('eer', 'min_dcf_0.05', 'min_dcf_0.01'):
            logger.log_metric(f'eval/{name}/{metric}', result[metric], epoch)
        logger.log_text(f'epoch {epoch} {name}: EER {result["eer"]:.3f} %, minDCF(0.05) '
                        f'{result["min_dcf_0.05"]:.4f}, minDCF(0.01) {result["min_dcf_0.01"]:.4f} '
                        f'({result["trials"]} trials)')


def parameter_counts(teacher, model):
    """The sizes results.json reports: the teacher, the deployed student (adapters included) and ECAPA."""
    return {'teacher': count_parameters(teacher), 'student': count_parameters(model.student),
            'backend': count_parameters(model.backend)}


def checkpoint_state(model, optimizer, epoch, best, num_classes, args):
    return {'epoch': epoch, 'model': model.state_dict(), 'optimizer': optimizer.state_dict(),
            'best': dict(best), 'num_classes': num_classes, 'args': {key: args[key] for key in MODEL_ARGS}}


def final_evaluation(model, trial_lists, args, device, logger, best_epoch, params):
    """Scores every trial list with the best model and writes results.json."""
    results = evaluate(model, trial_lists, args['path_test'], args, device, distributed.is_main())
    log_evaluation(logger, results, best_epoch)
    summary = {}
    for name, result in results.items():
        trials = trial_lists[name]
        logger.save_scores(name, trials.enroll, trials.test, trials.labels, result.pop('scores'))
        summary[name] = result
    summary['best_epoch'] = best_epoch
    summary['params'] = params
    logger.save_results(summary)
    return summary


def train(args, logger, device):
    """The whole OS-KDFT run."""
    manifest = scan_voxceleb(args['path_train'], 'path_train')
    trial_lists = load_trial_lists(args, logger)
    loader = build_train_loader(args, manifest, device)
    teacher = load_teacher(args['model_name_or_path'], args['tiny_ssl']).to(device)
    num_classes = len(manifest.speakers)
    weights = torch.from_numpy(class_weights(manifest.labels, num_classes)) if args['class_weight'] else None
    model = build_model(args, teacher, num_classes, weights).to(device)
    optimizer = build_optimizer(model)
    params = parameter_counts(teacher, model)
    logger.log_text(f'{len(manifest.paths)} training utterances of {num_classes} speakers; parameters {params}; '
                    f'augmentation {"on" if loader.dataset.augment else "off (no path_musan / path_rir)"}')

    show = distributed.is_main()
    tuning = {name: trials for name, trials in trial_lists.items() if name == 'Vox1-O'}
    if tuning:
        log_evaluation(logger, evaluate(model, tuning, args['path_test'], args, device, show), 0)
    else:
        logger.log_text('no Vox1-O list: the last epoch is kept as the best model')
    best = {'epoch': 0, 'eer': float('inf')}
    for epoch in range(1, args['epoch'] + 1):
        lrs = set_lrs(optimizer, epoch, args)
        loader.sampler.set_epoch(epoch)
        loader.dataset.set_epoch(epoch)
        losses = train_epoch(model, teacher, loader, optimizer, epoch, args, device, show)
        log_training(logger, epoch, lrs, losses)
        eer = float('nan')
        if tuning:
            results = evaluate(model, tuning, args['path_test'], args, device, show)
            log_evaluation(logger, results, epoch)
            eer = results['Vox1-O']['eer']
        improved = not tuning or eer < best['eer']
        if improved:
            best = {'epoch': epoch, 'eer': eer}
            best_weights = {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}
        state = checkpoint_state(model, optimizer, epoch, best, num_classes, args)
        logger.save_checkpoint('last.pt', state)
        if improved:
            logger.save_checkpoint('best.pt', state)

    model.load_state_dict(best_weights)
    logger.log_text(f'best epoch {best["epoch"]} (Vox1-O EER {best["eer"]:.3f} %); scoring every trial list')
    return final_evaluation(model, trial_lists, args, device, logger, best['epoch'], params)


def evaluate_checkpoint(args, logger, device):
    """mode=evaluate: rebuilds the model a checkpoint was trained with and scores the trial lists."""
    state = torch.load(args['checkpoint'], map_location='cpu', weights_only=True)
    model_args = {**args, **state['args']}
    teacher = load_teacher(model_args['model_name_or_path'], model_args['tiny_ssl'])
    model = build_model(model_args, teacher, state['num_classes'])
    model.load_state_dict(state['model'])
    model.to(device)
    trial_lists = load_trial_lists(args, logger)
    params = parameter_counts(teacher, model)
    return final_evaluation(model, trial_lists, args, device, logger, state['epoch'], params)
