"""What a training run is built from, stage by stage: the loader of a stage's crops and batch, the
optimizer and its learning rates, the precision, the DDP wrapper. trainer/train.py runs them."""

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from data.audio import FRAME_SAMPLES, SAMPLE_RATE
from data.augment import Augmenter
from data.datasets import TrainSet
from data.sampler import GlobalBatchSampler
from trainer.methods import locate
from trainer.schedule import group_lrs
from utils import distributed

AMP_DTYPES = {'none': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def build_train_loader(args, manifest, device, stage=None):
    """This process's share of every global batch of the stage's crops (None: the main settings'
    crops and batch); its own generator, so that starting the loader (at an epoch's start, or
    mid-epoch after a resume) draws nothing from the global random state."""
    augment = None
    if args['path_musan']:
        augment = Augmenter(args['path_musan'], args['path_rir'], args['aug_p'], args['clip_p'], args['ease_p'])
    dataset = TrainSet(manifest.paths, manifest.labels, crop_samples(stage, args), augment, args['seed'])
    sampler = GlobalBatchSampler(
        len(dataset), batch_size(stage, args), distributed.rank(), distributed.world_size(), args['seed']
    )
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=distributed.data_workers(args['num_workers']),
        pin_memory=device.type == 'cuda',
        generator=torch.Generator(),
    )


def crop_samples(stage, args):
    """The length of the stage's training crops in samples."""
    if stage is None or stage.crop_seconds is None:
        return args['num_train_frames'] * FRAME_SAMPLES
    return round(stage.crop_seconds * SAMPLE_RATE)


def batch_size(stage, args):
    """The stage's global batch."""
    return args['batch_size'] if stage is None or stage.batch_size is None else stage.batch_size


def stage_loader(loader, stage, args, manifest, device):
    """The loader of the stage's crops and batch: `loader` itself when they are its own."""
    same_crops = loader.dataset.num_samples == crop_samples(stage, args)
    if same_crops and loader.batch_sampler.batch_size == batch_size(stage, args):
        return loader
    return build_train_loader(args, manifest, device, stage)


def steps_before(stages, epoch, num_items, args):
    """Optimizer steps of the run's epochs before epoch `epoch` (1-based): the stages' batches differ."""
    batches = [batch_size(stages[locate(stages, earlier)[0]], args) for earlier in range(1, epoch)]
    return sum(num_items // batch for batch in batches)


def build_optimizer(model):
    """One Adam for a stage (a new stage gets a new one); the LR of each named group is set every
    epoch by the schedule."""
    groups = [
        {'name': name, 'params': trained, 'lr': 0.0}
        for name, params in model.parameter_groups().items()
        if (trained := [param for param in params if param.requires_grad])
    ]  # no adapter group without adapters, no student group with a frozen SSL model
    return torch.optim.Adam(groups, weight_decay=0.0)


def set_lrs(optimizer, stage_epoch, schedule, stage=None, steps_per_epoch=None):
    """Each group's LR for the stage's epoch `stage_epoch` by a Schedule (a stage scheduled by the
    step: its own, at the epoch's first step); the values, for the log."""
    if stage is not None and stage.lrs is not None:
        return set_group_lrs(optimizer, stage.lrs(stage_epoch, 0, steps_per_epoch))
    return set_group_lrs(optimizer, group_lrs(stage_epoch, schedule))


def set_group_lrs(optimizer, lrs):
    """{group: LR} set on the optimizer's groups (those it has); the values set."""
    lrs = {name: lr for name, lr in lrs.items() if name in {group['name'] for group in optimizer.param_groups}}
    for group in optimizer.param_groups:
        group['lr'] = lrs[group['name']]
    return lrs


def amp_dtype(amp, device):
    """amp=auto: bf16 on a GPU that has it, full precision otherwise."""
    if amp == 'auto':
        return torch.bfloat16 if device.type == 'cuda' and torch.cuda.is_bf16_supported() else None
    return AMP_DTYPES[amp]


def unwrap(model):
    """The SpeakerNet inside a DDP wrapper (the model itself in one process)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def distribute(model, device, stages):
    """DDP over the job's processes (the model itself in one process)."""
    if distributed.world_size() == 1:
        return model
    return DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == 'cuda' else None,
        find_unused_parameters=some_steps_leave_parameters_out(model, stages),
    )


def some_steps_leave_parameters_out(model, stages):
    """Whether a step can leave parameters without a gradient, which DDP then has to look for
    (find_unused_parameters) and counts as zero in the average: LayerDrop skips layers at random,
    on each rank its own; a KD-only stage (kd_ft's first) leaves out the back-end."""
    layerdrop = getattr(model.student.ssl.config, 'layerdrop', 0.0)
    return layerdrop > 0 or not all(stage.sv for stage in stages)
