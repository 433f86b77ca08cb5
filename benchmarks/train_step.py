"""Throughput of one OS-KDFT training step: ours (the training loop's step, trainer.methods.step_losses,
whose student shares one CNN front end between its two paths) against the original formulation (the
whole student, CNN included, on the duplicated batch, in fp32).

Each step: frozen teacher on the clean batch, student KD + SV paths on the augmented batch,
ECAPA-TDNN + AAM-softmax on the SV path, MSE KD loss x 100 + SV loss, backward, Adam step.
The two formulations' gradients are checked equal first (float64, same seed), then the steps
are timed alternately, each side on its own teacher and trained modules (built from the same seed,
so with the same weights: the attention kernel is fixed when a model is built). For each side:
seconds per step, utterances/s, the FLOPs of one step (torch.utils.flop_counter, forward +
backward), and on CUDA its peak memory and model FLOPs utilisation (MFU) against the GPU's dense
bf16 peak.

    python benchmarks/train_step.py                         # CPU-sized Wav2Vec2, batch 32 x 2 s
    python benchmarks/train_step.py --base                  # the wav2vec2-base shape, batch 4 x 2 s
    python benchmarks/train_step.py --device cuda --xlsr    # the wav2vec2-large-xlsr-53 shape, 16 x 2 s

On CPU both sides run in fp32 with SDPA attention by default, so only the formulation differs; on
CUDA ours runs under bf16 autocast with SDPA and the original in fp32 with eager attention (torch's
default fp32 settings; --ours-amp and --original-attention change either). Sizes given on the
command line win over --base and --xlsr. The last line is `gpu_train_step: ratio=X.XX` on CUDA
(median original step / median ours step) and `cpu_train_step: ratio=X.XX` on CPU (fastest steps,
as the line above it: on a shared machine the fastest step is the one that other processes'
load disturbed least).
"""

import argparse
import copy
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.audio import SAMPLE_RATE  # noqa: E402
from models.aam import AAMSoftmax  # noqa: E402
from models.ecapa import EcapaTdnn  # noqa: E402
from models.hf_compat import attention_of  # noqa: E402
from models.speaker_net import SpeakerNet  # noqa: E402
from models.ssl import frozen_forward, load_teacher  # noqa: E402
from models.student import Student  # noqa: E402
from trainer.methods import step_losses  # noqa: E402

KD_WEIGHT = 100.0
BASE_SHAPE = dict(
    hidden=768,
    teacher_layers=12,
    student_layers=4,
    conv_dim=512,
    intermediate=3072,
    heads=12,
    ecapa_channels=512,
    batch=4,
)
XLSR_SHAPE = dict(
    hidden=1024,
    teacher_layers=24,
    student_layers=4,
    conv_dim=512,
    intermediate=4096,
    heads=16,
    ecapa_channels=512,
    batch=16,
    stable_layer_norm=True,
)
DEVICE_DEFAULTS = {
    'cpu': dict(ours_amp='none', original_attention='sdpa', warmup=1, steps=8),
    'cuda': dict(ours_amp='bf16', original_attention='eager', warmup=3, steps=20),
}
# dense bf16 tensor-core peaks, FLOP/s, by a part of torch.cuda.get_device_name(); the first match counts
PEAK_BF16_FLOPS = (
    ('H100 PCIe', 756e12),
    ('H100 NVL', 835e12),
    ('H200 NVL', 835e12),
    ('H100', 989e12),
    ('H200', 989e12),
    ('A100', 312e12),
    ('L40S', 362e12),
)
# the flop counter knows the CUDA SDPA kernels only; CPU SDPA runs this one where attention has no dropout
# (the frozen teacher, and every layer in step_flops' eval mode)
ATEN = torch.ops.aten
CPU_SDPA_FLOPS = {
    ATEN._scaled_dot_product_flash_attention_for_cpu: lambda query, key, value, *args, **kwargs: sdpa_flop_count(
        query, key, value
    ),
    ATEN._scaled_dot_product_flash_attention_for_cpu_backward: lambda grad, query, key, value, *args, **kwargs: (
        sdpa_backward_flop_count(grad, query, key, value)
    ),
}
GIB = 2**30


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument('--base', action='store_true', help='the wav2vec2-base shape, batch 4')
    preset.add_argument('--xlsr', action='store_true', help='the wav2vec2-large-xlsr-53 shape, batch 16')
    parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    parser.add_argument('--ours-amp', choices=('none', 'bf16'), help='default: bf16 on CUDA, none on CPU')
    parser.add_argument(
        '--original-attention',
        choices=('sdpa', 'eager'),
        help="the original side's attention (ours: sdpa); default: eager on CUDA, sdpa on CPU",
    )
    parser.add_argument('--hidden', type=int, default=128)
    parser.add_argument('--teacher-layers', type=int, default=4)
    parser.add_argument('--student-layers', type=int, default=2)
    parser.add_argument('--conv-dim', type=int, default=64)
    parser.add_argument('--intermediate', type=int, default=256)
    parser.add_argument('--heads', type=int, default=4)
    parser.add_argument(
        '--stable-layer-norm',
        action='store_true',
        help="the large models' layout: pre-LN layers, a layer-normed CNN with biases",
    )
    parser.add_argument('--ecapa-channels', type=int, default=128)
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--seconds', type=float, default=2.0)
    parser.add_argument('--classes', type=int, default=100)
    parser.add_argument('--warmup', type=int, help='untimed steps per side first; default 1 on CPU, 3 on CUDA')
    parser.add_argument('--steps', type=int, help='timed steps per side; default 8 on CPU, 20 on CUDA')
    parser.add_argument('--check-batch', type=int, default=4, help='batch of the float64 gradient check')
    parser.add_argument(
        '--compile',
        action='store_true',
        help="torch.compile ours' student and ECAPA-TDNN, as compile=true does (after the checks)",
    )
    args = parser.parse_args(argv)
    preset = XLSR_SHAPE if args.xlsr else BASE_SHAPE if args.base else {}
    parser.set_defaults(**preset, **DEVICE_DEFAULTS[args.device])
    return parser.parse_args(argv)


def ssl_config(args):
    """A Wav2Vec2 config of the requested shape, with the default training-time regularisation."""
    config = dict(
        hidden_size=args.hidden,
        num_hidden_layers=args.teacher_layers,
        num_attention_heads=args.heads,
        intermediate_size=args.intermediate,
        conv_dim=(args.conv_dim,) * 7,
    )
    if args.stable_layer_norm:
        config.update(do_stable_layer_norm=True, feat_extract_norm='layer', conv_bias=True)
    return config


@dataclasses.dataclass(eq=False)
class Side:
    """One formulation with its own models and optimizer, and its timings."""

    label: str
    loss: Callable  # (teacher, model, clean, augmented, labels) -> loss
    amp: torch.dtype | None  # autocast dtype, None: none
    attention: str
    teacher: torch.nn.Module
    model: SpeakerNet
    optimizer: torch.optim.Optimizer
    times: list = dataclasses.field(default_factory=list)
    peak_bytes: int = 0

    def describe(self):
        return f'{"fp32" if self.amp is None else "bf16 autocast"}, {self.attention} attention'


def build(args, attention, device):
    """(teacher, trained modules, their Adam) with random weights drawn from seed 0."""
    torch.manual_seed(0)
    teacher = load_teacher('tiny', ssl_config(args), attention)
    student = Student(teacher, args.student_layers)
    # the student is built from a copy of the teacher's config: check it kept the attention kernel
    if attention_of(student.ssl.config) != attention:
        raise SystemExit(f'the student runs {attention_of(student.ssl.config)} attention, not {attention}')
    model = SpeakerNet(student, EcapaTdnn(student.hidden_size, args.ecapa_channels), AAMSoftmax(192, args.classes))
    model.to(device)
    return teacher.to(device), model, torch.optim.Adam(model.parameters(), lr=1e-4)


def batch_of(args, size, seed, device):
    generator = torch.Generator().manual_seed(seed)
    clean = torch.randn(size, int(args.seconds * SAMPLE_RATE), generator=generator)
    augmented = clean + 0.1 * torch.randn(clean.shape, generator=generator)
    labels = torch.randint(0, args.classes, (size,), generator=generator)
    return clean.to(device), augmented.to(device), labels.to(device)


def ours_loss(teacher, model, clean, augmented, labels):
    """The training loop's loss: SpeakerNet's two paths over one CNN front end."""
    return step_losses(model, teacher, clean, augmented, labels, KD_WEIGHT)[0]


def original_loss(teacher, model, clean, augmented, labels):
    """The original formulation: the whole student, CNN included, on the duplicated batch."""
    target = frozen_forward(teacher, clean)  # (B, T, D)
    kd_hidden, sv_hidden = model.student.forward_two_paths_duplicated(augmented)  # (B, T, D) each
    sv_loss, _ = model.head(model.backend(sv_hidden), labels)
    return F.mse_loss(kd_hidden, target) * KD_WEIGHT + sv_loss


def seeded_gradients(teacher, model, batch, loss):
    """Gradients of one step; every random draw (dropout, LayerDrop, masks) from the same seeds."""
    torch.manual_seed(1)
    np.random.seed(1)
    model.zero_grad(set_to_none=True)
    loss(teacher, model, *batch).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def check_gradients(args, teacher, model, device):
    """Both formulations' gradients in float64 on a small batch; returns the largest difference
    relative to the tensor's largest gradient. On CPU, dropout, LayerDrop and masking stay on: both
    formulations draw them in the same order, so equal seeds give equal draws. CUDA's generator
    places a draw by the shape of the tensor drawn (the original draws over a batch twice as long),
    so there the check runs in eval mode, with no random draw: it checks the arithmetic, the CPU
    check the draws too.
    It runs on the benchmark's device at the benchmark's shape (ours' copy: SDPA, whose float64
    path is the math kernel): on CUDA it checks the model that is timed, e.g. the pre-LN xlsr-53
    layout, on the GPU, where float64 costs seconds (at batch 2 on 2 CPU cores, about a minute)."""
    teacher, model = copy.deepcopy(teacher).double(), copy.deepcopy(model).double().train(device.type == 'cpu')
    batch = [t.double() if t.is_floating_point() else t for t in batch_of(args, args.check_batch, 2, device)]
    shared = seeded_gradients(teacher, model, batch, ours_loss)
    original = seeded_gradients(teacher, model, batch, original_loss)
    if shared.keys() != original.keys():
        raise AssertionError('the two formulations give gradients to different parameters')
    return max(
        ((shared[name] - original[name]).abs().max() / original[name].abs().max().clamp(min=1e-30)).item()
        for name in shared
    )


def step_loss(side, batch):
    with torch.autocast(batch[0].device.type, dtype=side.amp, enabled=side.amp is not None):
        return side.loss(side.teacher, side.model, *batch)


def step_flops(side, batch):
    """FLOPs of one step's forward + backward (the Adam step's elementwise work is not counted).
    Counted in eval mode, so that no layer is dropped (LayerDrop): the median timed step is such
    a step (with 0.1 per layer, 0.9 ** 4 = 66 % of the 4-layer student's steps drop none), and
    dropout and masking add no counted FLOPs."""
    counter = FlopCounterMode(display=False, custom_mapping=CPU_SDPA_FLOPS)
    side.model.eval()
    with counter:
        step_loss(side, batch).backward()
    side.model.train().zero_grad(set_to_none=True)
    return counter.get_total_flops()


def timed_step(side, batch, cuda):
    """Seconds of one step, and on CUDA the peak of the memory allocated during it."""
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    loss = step_loss(side, batch)
    side.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    side.optimizer.step()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, torch.cuda.max_memory_allocated() if cuda else 0


def time_steps(args, sides, batch):
    """Times the steps alternately, so that load from other processes falls on both sides alike;
    args.warmup untimed steps each first."""
    for step in range(args.warmup + args.steps):
        for side in sides:
            seconds, peak = timed_step(side, batch, batch[0].is_cuda)
            if step >= args.warmup:
                side.times.append(seconds)
                side.peak_bytes = max(side.peak_bytes, peak)


def resident_bytes(side):
    """Bytes a side keeps on the GPU between its steps: weights, buffers, gradients, Adam state."""
    modules = (side.teacher, side.model)
    tensors = [t for module in modules for t in (*module.parameters(), *module.buffers())]
    tensors += [p.grad for p in side.model.parameters() if p.grad is not None]
    tensors += [t for state in side.optimizer.state.values() for t in state.values() if torch.is_tensor(t)]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors if t.is_cuda}
    return sum(storages.values())


def peak_bf16_flops():
    name = torch.cuda.get_device_name()
    return next((peak for part, peak in PEAK_BF16_FLOPS if part in name), None)


def details(args, side, flops, own_peak, peak_flops):
    """The per-side line under the timings: precision, median throughput, FLOPs, memory, MFU."""
    median = statistics.median(side.times)
    memory = 'n/a' if own_peak is None else f'{own_peak / GIB:.2f} GiB'
    mfu = 'n/a' if peak_flops is None else f'{100 * flops / median / peak_flops:.1f} %'
    return (
        f'    {side.describe()}: median {args.batch / median:7.2f} utterances/s; '
        f'{flops / 1e12:.3f} TFLOP/step; peak memory {memory}; MFU {mfu}'
    )


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == 'cuda'
    if cuda and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no GPU is visible to torch')
    amp = torch.bfloat16 if args.ours_amp == 'bf16' else None
    ours = Side('shared front end (forward_two_paths)', ours_loss, amp, 'sdpa', *build(args, 'sdpa', device))
    original = Side(
        'original (student on the duplicated batch)',
        original_loss,
        None,
        args.original_attention,
        *build(args, args.original_attention, device),
    )
    layout = ' (pre-LN)' if args.stable_layer_norm else ''
    where = torch.cuda.get_device_name() if cuda else f'{torch.get_num_threads()} threads'
    print(
        f'Wav2Vec2 teacher: hidden {args.hidden}, {args.teacher_layers} layers{layout}, conv {args.conv_dim} '
        f'channels; student {args.student_layers} layers; ECAPA C={args.ecapa_channels}; batch {args.batch} x '
        f'{args.seconds:g} s; {where}'
    )
    difference = check_gradients(args, ours.teacher, ours.model, device)
    on = f', on {device.type}, eval mode' if cuda else ''
    print(f'gradient check (float64, batch {args.check_batch}{on}): largest relative difference {difference:.2e}')
    if difference > 1e-9:
        raise SystemExit('the two formulations give different gradients')
    batch = batch_of(args, args.batch, 3, device)
    flops = {side: step_flops(side, batch) for side in (ours, original)}
    if args.compile:
        ours.model.student.compile()
        ours.model.backend.compile()
        ours.label += ' + compile'
    time_steps(args, (ours, original), batch)
    peak_flops = peak_bf16_flops() if cuda else None
    for side, other in ((original, ours), (ours, original)):
        fastest, median = min(side.times), statistics.median(side.times)
        print(
            f'{side.label:44s} fastest {fastest:6.3f} s/step ({args.batch / fastest:7.2f} utterances/s), '
            f'median {median:6.3f} s/step'
        )
        own_peak = side.peak_bytes - resident_bytes(other) if cuda else None
        print(details(args, side, flops[side], own_peak, peak_flops))
    if cuda:
        peak = 'n/a (GPU not in the table)' if peak_flops is None else f'{peak_flops / 1e12:.0f} TFLOP/s'
        print(
            f"MFU: FLOPs per step / median step time / the GPU's dense bf16 peak ({peak}), for the fp32 "
            f"original too (torch's fp32 defaults: TF32 matmul {torch.backends.cuda.matmul.allow_tf32}, "
            f'TF32 cuDNN convolutions {torch.backends.cudnn.allow_tf32})'
        )
        print(
            "peak memory: torch.cuda.max_memory_allocated during the side's steps, less what the other side "
            'keeps on the GPU (weights, gradients, Adam state)'
        )
    # the fastest step is the one that load from other processes on a shared machine disturbed least
    ratio = min(original.times) / min(ours.times)
    median_ratio = statistics.median(original.times) / statistics.median(ours.times)
    print(f'throughput ratio shared / original: {ratio:.2f}x (fastest steps; {median_ratio:.2f}x by medians)')
    tag = ('gpu' if cuda else 'cpu') + '_train_step' + ('_compiled' if args.compile else '')
    print(f'{tag}: ratio={median_ratio if cuda else ratio:.2f}')


if __name__ == '__main__':
    main()
