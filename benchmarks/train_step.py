"""Throughput of one OS-KDFT training step: the shared CNN front end (Student.forward_two_paths)
against the original formulation (the whole student, CNN included, on the duplicated batch).

Each step: frozen teacher on the clean batch, student KD + SV paths on the augmented batch,
ECAPA-TDNN + AAM-softmax on the SV path, MSE KD loss + SV loss, backward, Adam step.
The two formulations' gradients are checked equal first (float64, same seed), then the steps
are timed alternately and the ratio of their throughputs is printed.

    python benchmarks/train_step.py            # CPU-sized Wav2Vec2, batch 32 x 2 s
    python benchmarks/train_step.py --base     # the wav2vec2-base shape, batch 4 x 2 s
"""
import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.aam import AAMSoftmax  # noqa: E402
from models.ecapa import EcapaTdnn  # noqa: E402
from models.ssl import frozen_forward, load_teacher  # noqa: E402
from models.student import Student  # noqa: E402

SAMPLE_RATE = 16000
KD_WEIGHT = 100.0
BASE_SHAPE = dict(hidden=768, teacher_layers=12, student_layers=4, conv_dim=512, intermediate=3072, heads=12,
                  ecapa_channels=512, batch=4)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--base', action='store_true', help='the wav2vec2-base shape (overrides the sizes below)')
    parser.add_argument('--hidden', type=int, default=128)
    parser.add_argument('--teacher-layers', type=int, default=4)
    parser.add_argument('--student-layers', type=int, default=2)
    parser.add_argument('--conv-dim', type=int, default=64)
    parser.add_argument('--intermediate', type=int, default=256)
    parser.add_argument('--heads', type=int, default=4)
    parser.add_argument('--ecapa-channels', type=int, default=128)
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--seconds', type=float, default=2.0)
    parser.add_argument('--classes', type=int, default=100)
    parser.add_argument('--steps', type=int, default=8, help='timed steps per formulation')
    parser.add_argument('--check-batch', type=int, default=4, help='batch of the float64 gradient check')
    args = parser.parse_args(argv)
    if args.base:
        for key, value in BASE_SHAPE.items():
            setattr(args, key, value)
    return args


def ssl_config(args):
    """A Wav2Vec2 config of the requested shape, with the default training-time regularisation."""
    return dict(hidden_size=args.hidden, num_hidden_layers=args.teacher_layers, num_attention_heads=args.heads,
                intermediate_size=args.intermediate, conv_dim=(args.conv_dim,) * 7)


def build(args):
    """(teacher, trained modules) with random weights."""
    torch.manual_seed(0)
    teacher = load_teacher('tiny', ssl_config(args))
    student = Student(teacher, args.student_layers)
    backend = EcapaTdnn(student.hidden_size, args.ecapa_channels)
    head = AAMSoftmax(192, args.classes)
    return teacher, torch.nn.ModuleDict({'student': student, 'backend': backend, 'head': head})


def batch_of(args, size, seed):
    generator = torch.Generator().manual_seed(seed)
    clean = torch.randn(size, int(args.seconds * SAMPLE_RATE), generator=generator)
    augmented = clean + 0.1 * torch.randn(clean.shape, generator=generator)
    labels = torch.randint(0, args.classes, (size,), generator=generator)
    return clean, augmented, labels


def step_loss(teacher, model, clean, augmented, labels, shared_front_end):
    target = frozen_forward(teacher, clean)                                     # (B, T, D)
    student = model['student']
    two_paths = student.forward_two_paths if shared_front_end else student.forward_two_paths_duplicated
    kd_hidden, sv_hidden = two_paths(augmented)                                 # (B, T, D) each
    sv_loss, _ = model['head'](model['backend'](sv_hidden), labels)
    return F.mse_loss(kd_hidden, target) * KD_WEIGHT + sv_loss


def seeded_gradients(teacher, model, batch, shared_front_end):
    """Gradients of one step; every random draw (dropout, LayerDrop, masks) from the same seeds."""
    torch.manual_seed(1)
    np.random.seed(1)
    model.zero_grad(set_to_none=True)
    step_loss(teacher, model, *batch, shared_front_end).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def check_gradients(args, teacher, model):
    """Both formulations' gradients in float64 on a small batch; returns the largest difference
    relative to the tensor's largest gradient. Dropout, LayerDrop and masking stay on: both
    formulations draw them in the same order, so equal seeds give equal draws."""
    teacher, model = copy.deepcopy(teacher).double(), copy.deepcopy(model).double().train()
    batch = [t.double() if t.is_floating_point() else t for t in batch_of(args, args.check_batch, seed=2)]
    shared = seeded_gradients(teacher, model, batch, shared_front_end=True)
    original = seeded_gradients(teacher, model, batch, shared_front_end=False)
    if shared.keys() != original.keys():
        raise AssertionError('the two formulations give gradients to different parameters')
    return max(((shared[name] - original[name]).abs().max() / original[name].abs().max().clamp(min=1e-30)).item()
               for name in shared)


def timed_step(teacher, model, optimizer, batch, shared_front_end):
    start = time.perf_counter()
    loss = step_loss(teacher, model, *batch, shared_front_end)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def time_steps(args, teacher, model):
    """Seconds of each timed step of each formulation, timed alternately so that load from other
    processes falls on both alike; one untimed warm-up step each."""
    runs = {True: (model, torch.optim.Adam(model.parameters(), lr=1e-4))}
    twin = copy.deepcopy(model)
    runs[False] = (twin, torch.optim.Adam(twin.parameters(), lr=1e-4))
    batch = batch_of(args, args.batch, seed=3)
    times = {True: [], False: []}
    for step in range(args.steps + 1):
        for shared_front_end, (trained, optimizer) in runs.items():
            seconds = timed_step(teacher, trained.train(), optimizer, batch, shared_front_end)
            if step > 0:
                times[shared_front_end].append(seconds)
    return times


def main(argv=None):
    args = parse_args(argv)
    teacher, model = build(args)
    print(f'Wav2Vec2 teacher: hidden {args.hidden}, {args.teacher_layers} layers, conv {args.conv_dim} channels; '
          f'student {args.student_layers} layers; ECAPA C={args.ecapa_channels}; batch {args.batch} x '
          f'{args.seconds:g} s; {torch.get_num_threads()} threads')
    difference = check_gradients(args, teacher, model)
    print(f'gradient check (float64, batch {args.check_batch}): largest relative difference {difference:.2e}')
    if difference > 1e-9:
        raise SystemExit('the two formulations give different gradients')
    times = time_steps(args, teacher, model)
    for shared_front_end, label in ((False, 'original (student on the duplicated batch)'),
                                    (True, 'shared front end (forward_two_paths)')):
        fastest, median = min(times[shared_front_end]), statistics.median(times[shared_front_end])
        print(f'{label:44s} fastest {fastest:6.2f} s/step ({args.batch / fastest:6.2f} utterances/s), '
              f'median {median:6.2f} s/step')
    # the fastest step is the one that load from other processes on a shared machine disturbed least
    ratio = min(times[False]) / min(times[True])
    median_ratio = statistics.median(times[False]) / statistics.median(times[True])
    print(f'throughput ratio shared / original: {ratio:.2f}x (fastest steps; {median_ratio:.2f}x by medians)')

if __name__ == '__main__':
    main()
