"""Size and CPU speed of the compressed system against its teacher, on the real wav2vec2-base and
wav2vec2-large-xlsr-53 shapes (SPEC.md section 3), set beside the paper's 76.2 % smaller
W2V2-based ECAPA-TDNN and 79 % less SSL inference time.

Each teacher is built from its public config's values, written out below, with random weights
(no download; the values change neither the counts nor the work of a forward), and the trained system from
it with the project's own models.build.build_model and arguments.py's defaults (4 student
layers, ECAPA-TDNN C=512, 192-dim embedding) for VoxCeleb2's 5,994 speakers. Printed per shape:
the parameters of each part; the size reduction of the deployed system, (student SSL + adapters
+ ECAPA) against (teacher SSL + ECAPA), the AAM head left out of both (it exists only in
training); and the SSL inference time on CPU (batch 1, inference mode, fp32, SDPA attention) of
the teacher and of the deployed student (adapters on) on 2 s and 6 s of audio, the two timed
alternately in one run, medians after a warm-up; beside them the CNN feature encoder that both
run alike, and the reduction in what follows it (projection, positional conv, layers).

Run it on an otherwise idle machine: with another process on one of 2 cores, torch's 2 threads
share the other and wait for each other at every op; single forwards then ran up to 10x slower (xlsr-53 at 2 s: 3.9 s
instead of 0.39 s), unevenly between the two models. The share of the CPU that was busy just
before and just after the run is printed (a few % when the machine was idle).

    python benchmarks/bench_model_size.py

About 40 s on 2 idle CPU cores. The last line is `bench_model_size: size_reduction=X
time_reduction=Y` for the xlsr-53 shape (%, the time at 6 s).
"""

import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import Wav2Vec2Config, Wav2Vec2Model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arguments import EXPERIMENT_ARGS, SYSTEM_ARGS  # noqa: E402
from data.audio import SAMPLE_RATE  # noqa: E402
from machine import describe  # noqa: E402
from models.build import build_model  # noqa: E402
from models.ecapa import EcapaTdnn  # noqa: E402
from models.ssl import count_parameters  # noqa: E402

VOXCELEB2_SPEAKERS = 5994
PAPER_SIZE_REDUCTION = 76.2
PAPER_TIME_REDUCTION = 79.0
ORIGINAL_ECAPA_WIDTH = 1024  # the original code's ECAPA-TDNN input, hard-coded to xlsr-53's width
ORIGINAL_ECAPA_PARAMS = 9_394_816

# The fields of the public config.json files that shape the model (the rest, e.g. the quantizer's,
# belong to Wav2Vec2ForPreTraining or to fine-tuning heads). Dropouts, LayerDrop and masking are
# the training-time regularisation the student keeps; in eval mode they do nothing.
COMMON = dict(
    conv_dim=(512,) * 7,
    conv_stride=(5, 2, 2, 2, 2, 2, 2),
    conv_kernel=(10, 3, 3, 3, 3, 2, 2),
    feat_extract_activation='gelu',
    hidden_act='gelu',
    num_conv_pos_embeddings=128,
    num_conv_pos_embedding_groups=16,
    layer_norm_eps=1e-5,
    activation_dropout=0.0,
    attention_dropout=0.1,
    hidden_dropout=0.1,
    feat_proj_dropout=0.1,
    mask_time_prob=0.05,
    mask_time_length=10,
    mask_feature_prob=0.0,
    vocab_size=32,
)
SHAPES = {
    'wav2vec2-base': dict(
        COMMON,
        num_hidden_layers=12,
        hidden_size=768,
        num_attention_heads=12,
        intermediate_size=3072,
        feat_extract_norm='group',
        do_stable_layer_norm=False,
        conv_bias=False,
        layerdrop=0.05,
    ),
    'wav2vec2-large-xlsr-53': dict(
        COMMON,
        num_hidden_layers=24,
        hidden_size=1024,
        num_attention_heads=16,
        intermediate_size=4096,
        feat_extract_norm='layer',
        do_stable_layer_norm=True,
        conv_bias=True,
        layerdrop=0.1,
    ),
}
# timed runs per (shape, seconds) after one warm-up run each; xlsr-53's teacher at 6 s takes 1 s a run on 2 cores
REPEATS = {
    ('wav2vec2-base', 2): 11,
    ('wav2vec2-base', 6): 9,
    ('wav2vec2-large-xlsr-53', 2): 9,
    ('wav2vec2-large-xlsr-53', 6): 7,
}
SECONDS = (2, 6)


def build_teacher(config):
    """The frozen teacher, as models.ssl.load_teacher returns one, from a config (random weights)."""
    torch.manual_seed(0)
    teacher = Wav2Vec2Model(Wav2Vec2Config(**config, attn_implementation='sdpa'))
    return teacher.eval().requires_grad_(False)


def sizes(teacher, model):
    """The parameters of each part."""
    return {
        'teacher SSL': count_parameters(teacher),
        'student SSL': sum(p.numel() for p in model.student.backbone_parameters()),
        'adapters': sum(p.numel() for p in model.student.adapter_parameters()),
        'ECAPA-TDNN': count_parameters(model.backend),
        'AAM head': count_parameters(model.head),
    }


def time_side_by_side(teacher, student, seconds, repeats):
    """Median seconds of one SSL forward of each (and of the CNN feature encoder the two share),
    batch 1: they run in turn, after one untimed warm-up each, so that a change in the machine's
    load touches all alike."""
    wave = torch.randn(1, seconds * SAMPLE_RATE, generator=torch.Generator().manual_seed(seconds))
    runs = {
        'teacher': lambda: teacher(wave).last_hidden_state,
        'student': lambda: student(wave, adapters=True),
        'cnn': lambda: student.extract_features(wave),
    }
    times = {name: [] for name in runs}
    with torch.inference_mode():
        for name, run in runs.items():
            run()
        for _ in range(repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def reduction(ours, reference):
    return 100 * (1 - ours / reference)


def report_shape(name, config, args):
    start = time.perf_counter()
    teacher = build_teacher(config)
    model = build_model(args, teacher, VOXCELEB2_SPEAKERS).eval()
    print(
        f'\n{name}: {config["num_hidden_layers"]} layers, hidden {config["hidden_size"]}, '
        f'{config["num_attention_heads"]} heads, FFN {config["intermediate_size"]}; student '
        f'{args["num_hidden_layers"]} layers, adapters of {args["adapter_bottleneck"]} '
        f'(built in {time.perf_counter() - start:.0f} s)'
    )
    counts = sizes(teacher, model)
    for part, count in counts.items():
        print(f'  {part:<12} {count:>12,}')
    parts = {
        'CNN feature encoder': teacher.feature_extractor,
        'projection': teacher.feature_projection,
        'positional conv': teacher.encoder.pos_conv_embed,
        'one layer': teacher.encoder.layers[0],
    }
    print('  of the SSL: ' + ', '.join(f'{part} {count_parameters(module):,}' for part, module in parts.items()))
    deployed = counts['student SSL'] + counts['adapters'] + counts['ECAPA-TDNN']
    full = counts['teacher SSL'] + counts['ECAPA-TDNN']
    size = reduction(deployed, full)
    print(
        f'  size: student SSL + adapters + ECAPA {deployed:,} vs teacher SSL + ECAPA {full:,}: '
        f'{size:.1f} % smaller (paper: {PAPER_SIZE_REDUCTION} %)'
    )
    print(
        f'        SSL alone, student + adapters vs teacher: '
        f'{reduction(counts["student SSL"] + counts["adapters"], counts["teacher SSL"]):.1f} % smaller; '
        f'AAM head included on both sides: '
        f'{reduction(deployed + counts["AAM head"], full + counts["AAM head"]):.1f} %'
    )
    time_cut = None
    for seconds in SECONDS:
        repeats = REPEATS[(name, seconds)]
        medians = time_side_by_side(teacher, model.student, seconds, repeats)
        time_cut = reduction(medians['student'], medians['teacher'])
        after_cnn = reduction(medians['student'] - medians['cnn'], medians['teacher'] - medians['cnn'])
        print(
            f'  SSL inference, {seconds} s of audio (median of {repeats}): teacher '
            f'{medians["teacher"] * 1000:.0f} ms, student {medians["student"] * 1000:.0f} ms: '
            f'{time_cut:.1f} % less (paper: {PAPER_TIME_REDUCTION:.0f} %)'
        )
        print(
            f'        of each, the CNN feature encoder {medians["cnn"] * 1000:.0f} ms; after it {after_cnn:.1f} % less'
        )
    return size, time_cut


def report_original_ecapa(args):
    """Ours takes the SSL width as input; the original hard-coded 1024 (xlsr-53's width)."""
    ours = count_parameters(EcapaTdnn(ORIGINAL_ECAPA_WIDTH, args['ecapa_channels'], args['embedding_size']))
    same = 'the same' if ours == ORIGINAL_ECAPA_PARAMS else f"DIFFERENT from the original's {ORIGINAL_ECAPA_PARAMS:,}"
    print(f"\nECAPA-TDNN at the original's {ORIGINAL_ECAPA_WIDTH}-wide input: ours {ours:,}, {same}")


def cpu_busy(seconds=1.0):
    """The share of all cores busy over the next `seconds`, from /proc/stat (Linux), with a warning
    when other processes hold the CPU."""

    def totals():
        with open('/proc/stat') as file:
            values = [int(v) for v in file.readline().split()[1:]]
        return sum(values), values[3] + values[4]  # all, idle + iowait

    try:
        total, idle = totals()
        time.sleep(seconds)
        total2, idle2 = totals()
    except (OSError, ValueError, IndexError):
        return 'unknown (no /proc/stat)'
    busy = 100 * (1 - (idle2 - idle) / max(total2 - total, 1))
    return f'{busy:.0f} %' + (': other processes are using the CPU, the times are unreliable' if busy > 20 else '')


def main():
    print(describe())
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, fp32')
    print(f'CPU busy before the run: {cpu_busy()}')
    args = {**SYSTEM_ARGS, **EXPERIMENT_ARGS}
    report_original_ecapa(args)
    results = {name: report_shape(name, config, args) for name, config in SHAPES.items()}
    size, time_cut = results['wav2vec2-large-xlsr-53']
    print(f'CPU busy after the run: {cpu_busy()}')
    print(f'bench_model_size: size_reduction={size:.1f} time_reduction={time_cut:.1f}')


if __name__ == '__main__':
    main()
