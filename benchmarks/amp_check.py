"""How far bf16 and fp16 autocast move the embedded demo's training from fp32.

The same seeded demo steps (the DEMO preset, the shipped teacher demo-teacher, the demo corpus, the
oskdft step, Adam as trainer/train.py builds it) run three times from identical initial weights on
identical batches: in fp32, under bf16 autocast, and under fp16 autocast with the GradScaler as
trainer/train.py uses it. It prints

- the loss trajectories (kd, sv, total) of every step, side by side;
- at the chosen steps, each parameter group's gradient against fp32's: cosine and norm ratio, for
  the optimizer's groups (backend, student, adapter) and finer ones (feature encoder, feature
  projection, transformer layers, ECAPA-TDNN, AAM head); a later step's gradient also carries how
  far the weights have drifted apart by then;
- which modules (by type, the teacher's apart) and which aten ops gave low-precision outputs in
  the first step's forward, the teacher's KD target included;
- the time of a step in each precision.

Autocast's CPU policy is not CUDA's: on a CPU, layer and group norms, softmax, pow and sqrt of
a bf16 input stay bf16; on CUDA autocast runs them in float32. A CPU run is then the harsher test.
The model keeps its layer and group norms in float32 on either (models/precision.py);
--low-precision-norms measures them as a CPU's autocast would run them otherwise.

    python benchmarks/amp_check.py                                 # 10 steps of 32 x 2 s (about 3 min)
    python benchmarks/amp_check.py --steps 5 --grad-steps 1,3,5 --modes fp32,bf16 key=value ...
    python benchmarks/amp_check.py --modes fp32,bf16 --low-precision-norms  # the norms in bf16 (CPU autocast)

The last line is `amp_check: worst_grad_cosine=X`, the lowest bf16 cosine over the groups and steps
on fp32's weights (the rounding alone).
"""

import argparse
import collections
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import main  # noqa: E402
from data.voxceleb import training_manifest  # noqa: E402
from machine import describe  # noqa: E402
from models.build import build_model  # noqa: E402
from models.precision import PLAIN  # noqa: E402
from models.ssl import load_teacher  # noqa: E402
from trainer.methods import METHODS  # noqa: E402
from trainer.parts import build_optimizer, build_train_loader, set_lrs  # noqa: E402
from trainer.schedule import Schedule
from utils.seed import seed_everything  # noqa: E402

CPU = torch.device('cpu')
DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
LOW = (torch.bfloat16, torch.float16)
# finer groups: the first matching prefix of a parameter's name
PARTS = (
    ('adapters', 'student.ssl.encoder.layers', '.adapter.'),
    ('feature encoder', 'student.ssl.feature_extractor', ''),
    ('feature projection', 'student.ssl.feature_projection', ''),
    ('transformer layers', 'student.ssl', ''),  # the encoder's layers, positional conv, LayerNorm
    ('ECAPA-TDNN', 'backend', ''),
    ('AAM head', 'head', ''),
)


class Quiet:
    def log_text(self, text):
        pass


def parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('--steps', type=int, default=10, help='training steps in each precision (default 10)')
    parser.add_argument('--batch-size', type=int, default=32, help="crops a step (default 32, the demo's)")
    parser.add_argument(
        '--grad-steps', default='1,5,last', help="steps whose gradients are compared (default '1,5,last')"
    )
    parser.add_argument('--modes', default='fp32,bf16,fp16', help='precisions, fp32 first (default fp32,bf16,fp16)')
    parser.add_argument(
        '--low-precision-norms',
        action='store_true',
        help="the layer and group norms as a CPU's autocast runs plain ones (bf16), not in float32",
    )
    parser.add_argument('overrides', nargs='*', metavar='key=value', help='arguments.py values')
    options = parser.parse_args(argv)
    options.modes = options.modes.split(',')
    if options.modes[0] != 'fp32' or not set(options.modes) <= set(DTYPES):
        parser.error(f'--modes {",".join(options.modes)}: fp32 first, then any of bf16, fp16')
    options.grad_steps = sorted({options.steps if s == 'last' else int(s) for s in options.grad_steps.split(',')})
    if not all(1 <= step <= options.steps for step in options.grad_steps):
        parser.error(f'--grad-steps: each of 1..{options.steps} or last')
    return options


def norms_in_low_precision(*models):
    """The models' layer and group norms made plain nn.LayerNorm / nn.GroupNorm again, which a CPU's
    autocast runs in bf16 (the model keeps them in float32: models/precision.py)."""
    for model in models:
        for module in model.modules():
            if type(module) in PLAIN:
                module.__class__ = PLAIN[type(module)]


def demo_setup(overrides, batch_size, steps):
    """The demo's settings, teacher, initial model and its first `steps` training batches."""
    args, _ = main.resolve_arguments(['device=cpu', f'batch_size={batch_size}', 'num_workers=0', *overrides])
    args, _ = main.prepare(args)
    seed_everything(args['seed'])
    manifest = training_manifest(args, Quiet())
    loader = build_train_loader(args, manifest, CPU)
    loader.batch_sampler.set_epoch(1, 0)
    loader.dataset.set_epoch(1)
    batches = [batch for _, batch in zip(range(steps), loader)]
    teacher = load_teacher(args['model_name_or_path'], args['tiny_ssl'])
    model = build_model(args, teacher, len(manifest.speakers))
    return args, teacher, model, batches


def group_of(name, coarse):
    """(optimizer group, finer group) of a parameter."""
    return coarse[name], next(part for part, prefix, inner in PARTS if name.startswith(prefix) and inner in name)


def first_tensor(output):
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return next((t for t in map(first_tensor, output) if t is not None), None)
    return getattr(output, 'last_hidden_state', None)  # a Hugging Face ModelOutput


class OpDtypes(TorchDispatchMode):
    """Counts each aten op's floating-point output dtypes."""

    def __init__(self):
        super().__init__()
        self.seen = collections.defaultdict(collections.Counter)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tensor = first_tensor(out)
        if tensor is not None and tensor.is_floating_point():
            self.seen[func.overloadpacket.__name__][tensor.dtype] += 1
        return out


def watch_modules(modules):
    """Forward hooks recording each (part, module type)'s output dtypes; returns (record, remove)."""
    record = collections.defaultdict(collections.Counter)
    handles = []
    for part, module in modules.items():
        for sub in module.modules():
            key = (part, type(sub).__name__)

            def hook(_, __, output, key=key):
                tensor = first_tensor(output)
                if tensor is not None and tensor.is_floating_point():
                    record[key][tensor.dtype] += 1

            handles.append(sub.register_forward_hook(hook))
    return record, lambda: [handle.remove() for handle in handles]


def run(mode, args, teacher, initial, batches, grad_steps):
    """The steps in one precision: (losses per step [(kd, sv, total)], {step: {name: grad}},
    seconds per step, module dtypes and op dtypes of the first step's forward, the steps that
    fp16's loss scaler skipped on an overflow)."""
    dtype = DTYPES[mode]
    model = copy.deepcopy(initial)
    model.train()
    optimizer = build_optimizer(model)
    set_lrs(optimizer, 1, Schedule.of(args))
    scaler = torch.amp.GradScaler('cpu', enabled=dtype == torch.float16)
    step_fn = METHODS[args['method']].stages(args)[0].step
    seed_everything(args['seed'])  # the same dropout, masking and SpecAugment draws in every precision
    losses, grads, seconds, skipped = [], {}, [], []
    modules, remove = watch_modules({'teacher': teacher, 'student': model.student, 'back-end': model.backend})
    ops = OpDtypes()
    for step, (clean, augmented, labels, _) in enumerate(batches, start=1):
        started, draws = time.perf_counter(), random_state()
        with torch.autocast('cpu', dtype=dtype, enabled=dtype is not None):
            if step == 1:
                with ops:
                    loss, values = step_fn(model, teacher, clean, augmented, labels, 1)
                remove()
            else:
                loss, values = step_fn(model, teacher, clean, augmented, labels, 1)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        if step in grad_steps:
            grads[step] = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
            if dtype is None:  # the low precisions' gradients on these same weights: rounding alone, no drift
                for mode in DTYPES:
                    if DTYPES[mode] is not None:
                        grads[step, mode] = gradients_at(
                            model, teacher, step_fn, (clean, augmented, labels), mode, draws
                        )
        scale = scaler.get_scale() if scaler.is_enabled() else None
        scaler.step(optimizer)
        scaler.update()
        seconds.append(time.perf_counter() - started)
        losses.append(values[:3].tolist())
        if scale is not None and scaler.get_scale() < scale:
            skipped.append(step)
    return losses, grads, seconds, modules, ops.seen, skipped


def gradients_at(model, teacher, step_fn, batch, mode, draws):
    """{name: grad} of one step in `mode` on the model's present weights with the random state
    `draws`, leaving its buffers (BatchNorm statistics), gradients and the random state as they
    were (the run goes on in fp32)."""
    state, buffers = random_state(), [buffer.clone() for buffer in model.buffers()]
    saved = {name: p.grad for name, p in model.named_parameters()}
    set_random_state(draws)
    model.zero_grad(set_to_none=True)
    with torch.autocast('cpu', dtype=DTYPES[mode]):
        loss, _ = step_fn(model, teacher, *batch, 1)
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    for buffer, kept in zip(model.buffers(), buffers):
        buffer.copy_(kept)
    for name, p in model.named_parameters():
        p.grad = saved[name]
    set_random_state(state)
    return grads


def random_state():
    return torch.get_rng_state(), np.random.get_state()  # numpy: Hugging Face's time masks


def set_random_state(state):
    torch.set_rng_state(state[0])
    np.random.set_state(state[1])


def compare(grads, reference, groups):
    """{group: (cosine, norm ratio)} of grads against reference, each group's gradients flattened."""
    result = {}
    for group in sorted(set(groups.values()), key=list(groups.values()).index):
        names = [name for name in reference if groups[name] == group]
        ours = torch.cat([grads[name].flatten().double() for name in names])
        ref = torch.cat([reference[name].flatten().double() for name in names])
        if torch.isfinite(ours).all():
            result[group] = (F.cosine_similarity(ours, ref, dim=0).item(), (ours.norm() / ref.norm()).item())
    return result  # a group whose gradients overflowed (fp16: its step skipped) left out


def main_(argv=None):
    options = parse(argv)
    started = time.perf_counter()
    print(f'{describe()}; torch {torch.__version__}, {torch.get_num_threads()} threads', flush=True)
    args, teacher, initial, batches = demo_setup(options.overrides, options.batch_size, options.steps)
    if options.low_precision_norms:
        norms_in_low_precision(teacher, initial)
    print(
        f"the demo's model ({args['model_name_or_path'].rsplit('/', 1)[-1]}, {args['num_hidden_layers']}-layer "
        f'student), {len(batches)} steps of {options.batch_size} x {args["num_train_frames"] / 100:.0f} s, '
        f'seed {args["seed"]}; modes {", ".join(options.modes)}',
        flush=True,
    )
    results = {}
    for mode in options.modes:
        results[mode] = run(mode, args, teacher, initial, batches, options.grad_steps)
        skipped = results[mode][5]
        note = f'; the loss scaler skipped step {", ".join(map(str, skipped))} (overflow)' if skipped else ''
        print(f'{mode}: {statistics.median(results[mode][2]):.2f} s a step{note}', flush=True)

    print('\nlosses (kd, sv, total) per step')
    print('step  ' + '  '.join(f'{mode:>26s}' for mode in options.modes))
    for step in range(len(batches)):
        row = '  '.join('{:8.4f} {:8.4f} {:8.4f}'.format(*results[mode][0][step]) for mode in options.modes)
        print(f'{step + 1:4d}  {row}')

    coarse = {id(p): name for name, params in initial.parameter_groups().items() for p in params}
    names = {
        name: group_of(name, {n: coarse[id(p)] for n, p in initial.named_parameters()})
        for name, _ in initial.named_parameters()
    }
    worst = {}
    for step in options.grad_steps:
        reference = results['fp32'][1][step]
        for title, source in (
            ("on fp32's weights (rounding alone)", lambda mode: results['fp32'][1][step, mode]),
            ('along each run (rounding and the drift of the steps before)', lambda mode: results[mode][1][step]),
        ):
            if step == 1 and title.startswith('along'):
                continue  # step 1: every run is still on fp32's weights
            print(f'\ngradients at step {step} against fp32, {title}: cosine / norm ratio')
            for level in (0, 1):
                groups = {name: names[name][level] for name in reference}
                table = {mode: compare(source(mode), reference, groups) for mode in options.modes[1:]}
                for group in dict.fromkeys(groups.values()):
                    cells = '  '.join(
                        f'{mode} {table[mode][group][0]:.4f} / {table[mode][group][1]:.3f}'
                        if group in table[mode]
                        else f'{mode} overflow (skipped)'
                        for mode in table
                    )
                    print(f'  {group:20s} {cells}')
                    for mode in table:
                        if group in table[mode]:
                            worst[mode, title[:2]] = min(worst.get((mode, title[:2]), 1.0), table[mode][group][0])

    for mode in options.modes[1:]:
        modules, ops = results[mode][3], results[mode][4]
        target = modules[('teacher', type(teacher).__name__)]
        print(f'\n{mode}: output dtypes in the first forward; the KD target: {", ".join(map(str, target))}')
        low = sorted(f'{part}/{kind}' for (part, kind), counter in modules.items() if set(counter) & set(LOW))
        full = sorted(f'{part}/{kind}' for (part, kind), counter in modules.items() if not set(counter) & set(LOW))
        print(f'  modules low precision: {", ".join(low)}')
        print(f'  modules float32 only:  {", ".join(full)}')
        low_ops = sorted(op for op, counter in ops.items() if set(counter) & set(LOW))
        full_ops = sorted(op for op, counter in ops.items() if torch.float32 in counter and not set(counter) & set(LOW))
        print(f'  aten ops with low-precision outputs: {", ".join(low_ops)}')
        print(f'  aten ops with float32 outputs only:  {", ".join(full_ops)}')

    print('\nworst gradient cosine over the groups and steps:')
    for (mode, kind), value in worst.items():
        print(f'  {mode} {"on fp32" + chr(39) + "s weights" if kind == "on" else "along its own run"}: {value:.4f}')
    print(f'run time {time.perf_counter() - started:.0f} s')
    print(f'amp_check: worst_grad_cosine={worst.get(("bf16", "on"), float("nan")):.4f}')


if __name__ == '__main__':
    main_()
