"""CPU latency of the deployed model run three ways: eager PyTorch, the TorchScript file and the ONNX
file under onnxruntime (the files mode=export writes, made by the same functions), on 3 s and 10 s
of audio; and the student beside a system of the teacher's size, as ratios.

Both systems have the real wav2vec2-base shape (benchmarks/bench_model_size.py's SHAPES, random
weights, no download) and arguments.py's defaults: the student is the 4-layer OS-KDFT student with
its adapters + ECAPA-TDNN (C=512, 192-dim), the teacher-sized system the whole 12-layer SSL model +
the same ECAPA-TDNN (what `method=ft` deploys). Each takes a raw wave (1, L) and gives the
embedding (1, 192), the wave-to-embedding latency a user sees.

All six (system, runtime) pairs of one length are timed in turn, after two untimed runs each
(TorchScript's profiling executor optimises on its first runs), so that a change in the machine's
load touches all alike; medians are printed. torch and onnxruntime get the same number of threads.
Run it on an otherwise idle machine (the share of the CPU busy before and after is printed).

    python benchmarks/bench_export.py

About 3 minutes on 2 idle CPU cores (a minute of it exporting). The last line is `bench_export:
...` with the speed-ups of TorchScript and onnxruntime over eager for the student at 10 s, and the
student's latency over the teacher-sized system's at 10 s, eager and under onnxruntime.
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arguments import EXPERIMENT_ARGS, SYSTEM_ARGS  # noqa: E402
from bench_model_size import SHAPES, VOXCELEB2_SPEAKERS, build_teacher, cpu_busy  # noqa: E402
from data.audio import SAMPLE_RATE  # noqa: E402
from inference.export import (  # noqa: E402
    INPUT_NAME,
    Embedder,
    export_onnx,
    export_torchscript,
    onnx_session,
    quiet_exporters,
)
from machine import describe  # noqa: E402
from models.build import build_model  # noqa: E402
from models.ssl import count_parameters  # noqa: E402

SECONDS = (3, 10)
REPEATS = {3: 9, 10: 5}  # timed runs per (system, runtime) after the warm-up
WARM_UP = 2
RUNTIMES = ('eager', 'TorchScript', 'onnxruntime')


def systems(args):
    """{'student': Embedder, 'teacher': Embedder} on the wav2vec2-base shape."""
    teacher = build_teacher(SHAPES['wav2vec2-base'])
    built = {
        'student': build_model(args, teacher, VOXCELEB2_SPEAKERS),
        'teacher': build_model(dict(args, method='ft'), teacher, VOXCELEB2_SPEAKERS),
    }
    return {name: Embedder(model.eval()) for name, model in built.items()}


def exported_runtimes(name, embedder, folder):
    """{runtime: function wave -> embedding} for one system, its files written into folder."""
    start = time.perf_counter()
    export_torchscript(embedder, str(folder / f'{name}.pt'))
    traced_at = time.perf_counter()
    export_onnx(embedder, str(folder / f'{name}.onnx'))
    print(
        f'  {name}: TorchScript traced in {traced_at - start:.0f} s, ONNX exported in '
        f'{time.perf_counter() - traced_at:.0f} s',
        flush=True,
    )
    traced = torch.jit.load(str(folder / f'{name}.pt'))
    session = onnx_session(str(folder / f'{name}.onnx'), threads=torch.get_num_threads())
    return {
        'eager': embedder,
        'TorchScript': traced,
        'onnxruntime': lambda wave: torch.from_numpy(session.run(None, {INPUT_NAME: wave.numpy()})[0]),
    }


def time_in_turn(runs, wave, repeats):
    """Median seconds of each run on wave, all timed in turn."""
    times = {key: [] for key in runs}
    with torch.inference_mode(), quiet_exporters():
        for _ in range(WARM_UP):
            for run in runs.values():
                run(wave)
        for _ in range(repeats):
            for key, run in runs.items():
                start = time.perf_counter()
                run(wave)
                times[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in times.items()}


def largest_differences(runs, wave):
    """|runtime - eager| at most, per (system, runtime)."""
    with torch.inference_mode(), quiet_exporters():
        eager = {system: runs[(system, 'eager')](wave) for system, _ in runs}
        return {key: float((run(wave) - eager[key[0]]).abs().max()) for key, run in runs.items() if key[1] != 'eager'}


def main():
    print(describe())
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads (onnxruntime as many), fp32, batch 1')
    print(f'CPU busy before the run: {cpu_busy()}')
    args = {**SYSTEM_ARGS, **EXPERIMENT_ARGS}
    embedders = systems(args)
    for name, embedder in embedders.items():
        print(
            f'{name}: {embedder.student.ssl.config.num_hidden_layers} SSL layers'
            f'{" + adapters" if embedder.student.adapters() else ""} + ECAPA-TDNN, '
            f'{count_parameters(embedder):,} parameters'
        )
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        print('exporting (the functions of mode=export):')
        for name, embedder in embedders.items():
            for runtime, run in exported_runtimes(name, embedder, Path(folder)).items():
                runs[(name, runtime)] = run
        probe = 0.1 * torch.randn(1, 3 * SAMPLE_RATE, generator=torch.Generator().manual_seed(0))
        differences = largest_differences(runs, probe)
        print(
            'largest |exported - eager| on 3 s: '
            + ', '.join(f'{system} {runtime} {value:.1e}' for (system, runtime), value in differences.items())
        )
        medians = {}
        for seconds in SECONDS:
            wave = 0.1 * torch.randn(1, seconds * SAMPLE_RATE, generator=torch.Generator().manual_seed(seconds))
            medians[seconds] = time_in_turn(runs, wave, REPEATS[seconds])
    report(medians)
    print(f'CPU busy after the run: {cpu_busy()}')
    at_10 = medians[10]
    eager, onnx = at_10[('student', 'eager')], at_10[('student', 'onnxruntime')]
    print(
        f'bench_export: torchscript_speedup={eager / at_10[("student", "TorchScript")]:.2f} '
        f'onnxruntime_speedup={eager / onnx:.2f} '
        f'student_over_teacher_eager={eager / at_10[("teacher", "eager")]:.2f} '
        f'student_over_teacher_onnxruntime={onnx / at_10[("teacher", "onnxruntime")]:.2f}'
    )


def report(medians):
    """The latencies side by side, then the ratios."""
    print(f'\nlatency, median of {REPEATS[3]} (3 s) / {REPEATS[10]} (10 s) runs, ms')
    print(
        f'{"audio":>6} {"system":>8} '
        + ' '.join(f'{runtime:>12}' for runtime in RUNTIMES)
        + f' {"TS/eager":>9} {"ORT/eager":>10}'
    )
    for seconds, times in medians.items():
        for system in ('student', 'teacher'):
            ms = [times[(system, runtime)] * 1000 for runtime in RUNTIMES]
            print(
                f'{seconds:>4} s {system:>8} '
                + ' '.join(f'{value:>12.0f}' for value in ms)
                + f' {ms[1] / ms[0]:>9.2f} {ms[2] / ms[0]:>10.2f}'
            )
    print('\nstudent / teacher-sized system, latency ratio (the paper: 79 % less SSL inference time)')
    print(f'{"audio":>6} ' + ' '.join(f'{runtime:>12}' for runtime in RUNTIMES))
    for seconds, times in medians.items():
        print(
            f'{seconds:>4} s ' + ' '.join(f'{times[("student", r)] / times[("teacher", r)]:>12.2f}' for r in RUNTIMES)
        )


if __name__ == '__main__':
    main()
