"""Where the embedded demo's time goes: its training step and its evaluation, profiled as they run.

Builds the demo exactly as `python main.py` does (the DEMO preset, the demo corpus, the demo teacher
by name, the oskdft step on the training loader's augmented batches), then

- times `--steps` training steps (after one untimed), data loading apart from compute;
- counts the FLOPs of one step (forward + backward, torch.utils.flop_counter) and of one Vox1-O
  evaluation, and the GFLOP/s each reaches;
- sets them beside what these cores reach on a plain fp32 matmul (2048 x 2048, the same threads);
- prints the top operators by self CPU time (torch.profiler) of the steps and of the evaluation.

    python benchmarks/profile_demo.py                    # 6 timed steps, one evaluation
    python benchmarks/profile_demo.py --steps 10 key=value ...   # any arguments.py value

The last line is `profile_demo: step_s=X eval_s=Y step_gflops=Z matmul_gflops=W`.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import main  # noqa: E402
from benchmarks.train_step import CPU_SDPA_FLOPS  # noqa: E402
from data.voxceleb import training_manifest  # noqa: E402
from evaluation.evaluate import EmbeddingRecipe, evaluate  # noqa: E402
from evaluation.trials import load_trial_lists  # noqa: E402
from models.build import build_model  # noqa: E402
from models.ssl import load_teacher  # noqa: E402
from trainer.methods import METHODS  # noqa: E402
from trainer.parts import build_optimizer, build_train_loader, set_lrs  # noqa: E402
from trainer.schedule import Schedule
from utils.seed import seed_everything  # noqa: E402

TOP = 12


class Quiet:
    """The logger the trainer's helpers write to, kept silent here."""

    def log_text(self, text):
        pass


def parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('--steps', type=int, default=6, help='timed training steps (default 6)')
    parser.add_argument('overrides', nargs='*', metavar='key=value', help='arguments.py values')
    return parser.parse_args(argv)


def demo_setup(overrides):
    """The demo run's settings, model, optimizer, loader and Vox1-O list, as main.py builds them."""
    args, _ = main.resolve_arguments(['device=cpu', *overrides])
    args, _ = main.prepare(args)
    seed_everything(args['seed'])
    manifest = training_manifest(args, Quiet())
    lists = load_trial_lists(args, Quiet(), manifest)
    loader = build_train_loader(args, manifest, torch.device('cpu'))
    teacher = load_teacher(args['model_name_or_path'], args['tiny_ssl'])
    model = build_model(args, teacher, len(manifest.speakers))
    optimizer = build_optimizer(model)
    set_lrs(optimizer, 1, Schedule.of(args))
    loader.batch_sampler.set_epoch(1, 0)
    loader.dataset.set_epoch(1)
    return args, teacher, model, optimizer, loader, {'Vox1-O': lists['Vox1-O']}


def train_step(args, teacher, model, optimizer, batch):
    clean, augmented, labels, _ = batch
    loss, _ = METHODS[args['method']].stages(args)[0].step(model, teacher, clean, augmented, labels, 1)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def matmul_gflops(size=2048, repeats=10):
    """GFLOP/s of a plain fp32 matmul on these cores (median of repeats)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(times) / 1e9


def top_table(prof, title):
    print(f'\n{title}: top {TOP} operators by self CPU time')
    print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=TOP, max_name_column_width=48))


def main_(argv=None):
    options = parse(argv)
    args, teacher, model, optimizer, loader, vox1_o = demo_setup(options.overrides)
    model.train()
    batches = iter(loader)
    train_step(args, teacher, model, optimizer, next(batches))  # untimed: first-call costs

    with FlopCounterMode(display=False, custom_mapping=CPU_SDPA_FLOPS) as counter:
        train_step(args, teacher, model, optimizer, next(batches))
    step_flops = counter.get_total_flops()

    data_s, compute_s = [], []
    with profile(activities=[ProfilerActivity.CPU]) as step_prof:
        for _ in range(options.steps):
            started = time.perf_counter()
            batch = next(batches)
            loaded = time.perf_counter()
            train_step(args, teacher, model, optimizer, batch)
            data_s.append(loaded - started)
            compute_s.append(time.perf_counter() - loaded)
    top_table(step_prof, f'training step ({options.steps} steps)')

    model.eval()
    with FlopCounterMode(display=False, custom_mapping=CPU_SDPA_FLOPS) as counter:
        evaluate(model, vox1_o, args['path_test'], EmbeddingRecipe.of(args), torch.device('cpu'), show_progress=False)
    eval_flops = counter.get_total_flops()
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as eval_prof:
        evaluate(model, vox1_o, args['path_test'], EmbeddingRecipe.of(args), torch.device('cpu'), show_progress=False)
    eval_s = time.perf_counter() - started
    top_table(eval_prof, 'one Vox1-O evaluation')

    step_s = statistics.median(compute_s)
    peak = matmul_gflops()
    print(
        f'\ntraining step: {statistics.median(data_s) + step_s:.3f} s by medians = data {statistics.median(data_s):.3f}'
        f' + compute {step_s:.3f}; {step_flops / 1e9:.1f} GFLOP a step, {step_flops / 1e9 / step_s:.1f} GFLOP/s'
    )
    print(
        f'Vox1-O evaluation ({len(vox1_o["Vox1-O"].utterances())} utterances): {eval_s:.2f} s '
        f'(under the profiler); {eval_flops / 1e9:.1f} GFLOP, {eval_flops / 1e9 / eval_s:.1f} GFLOP/s'
    )
    print(f'plain fp32 matmul 2048 x 2048 on {torch.get_num_threads()} threads: {peak:.1f} GFLOP/s')
    print(
        f'profile_demo: step_s={step_s:.3f} eval_s={eval_s:.2f} step_gflops={step_flops / 1e9 / step_s:.1f} '
        f'matmul_gflops={peak:.1f}'
    )


if __name__ == '__main__':
    main_()
