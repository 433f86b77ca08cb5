"""One process of the 2-process DDP checks (torchrun --standalone --nproc_per_node=2, gloo), and the
same computations in one process for the tests to compare with.

    torchrun --standalone --nproc_per_node=2 tests/trainer/ddp_worker.py OUT_DIR TEST_ROOT

writes to OUT_DIR (rank 0): step.pt (the averaged gradients of one step, the weights after three
plain-SGD steps), layerdrop.pt (every rank's weights after steps with dropout, masking and
LayerDrop on), enroll.pt (the sharded enrollment of the utterances under TEST_ROOT), throughput.pt
(rank 0's metrics and telemetry totals of three steps, each step an interval).
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from arguments import EXPERIMENT_ARGS, SYSTEM_ARGS  # noqa: E402
from evaluation.evaluate import embed_utterances  # noqa: E402
from log.controller import LogModuleController  # noqa: E402
from models.build import build_model  # noqa: E402
from models.ssl import load_teacher  # noqa: E402
from tests.log.recorder import MetricRecorder  # noqa: E402
from trainer.methods import METHODS  # noqa: E402
from trainer.parts import build_optimizer, distribute, set_lrs  # noqa: E402
from trainer.schedule import Schedule
from trainer.state import TrainState  # noqa: E402
from trainer.train import Job, StopSignal, train_epoch  # noqa: E402
from utils import distributed  # noqa: E402
from utils.telemetry import Telemetry  # noqa: E402

QUIET = dict(
    layerdrop=0.0,
    mask_time_prob=0.0,
    hidden_dropout=0.0,
    attention_dropout=0.0,
    activation_dropout=0.0,
    feat_proj_dropout=0.0,
    final_dropout=0.0,
)
NOISY = dict(
    layerdrop=0.5,
    mask_time_prob=0.3,
    mask_time_length=2,
    hidden_dropout=0.1,
    attention_dropout=0.1,
    activation_dropout=0.1,
    feat_proj_dropout=0.1,
)
TINY = dict(
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)
ARGS = dict(
    {**SYSTEM_ARGS, **EXPERIMENT_ARGS},
    num_hidden_layers=2,
    ecapa_channels=16,
    embedding_size=16,
    epoch=4,
    log_interval=1000,
)
NUM_CLASSES = 6
GLOBAL_BATCH = 4
CPU = torch.device('cpu')


def build(noisy=False, dtype=torch.float64):
    """The same teacher and model on every rank (seed 0); class weights that differ per speaker, so
    a per-rank weighted mean would give the wrong gradient."""
    torch.manual_seed(0)
    teacher = load_teacher('tiny', dict(TINY, **(NOISY if noisy else QUIET)))
    args = dict(ARGS, spec_mask_p=0.6 if noisy else 0.0)
    weights = torch.tensor([1.0, 2.0, 3.0, 1.5, 4.0, 0.5])
    model = build_model(args, teacher, NUM_CLASSES, weights).to(dtype)
    for adapter in model.student.adapters():  # non-zero adapters: the SV path differs from the KD path
        torch.nn.init.normal_(adapter.up.weight, std=0.1)
    return teacher.to(dtype), model, args


def global_batches(count, dtype=torch.float64):
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(count):
        clean = torch.randn(GLOBAL_BATCH, 6400, generator=generator, dtype=dtype)
        augmented = clean + 0.3 * torch.randn(clean.shape, generator=generator, dtype=dtype)
        labels = torch.randint(0, NUM_CLASSES, (GLOBAL_BATCH,), generator=generator)
        batches.append((clean, augmented, labels))
    return batches


def my_share(batches):
    """This rank's contiguous slice of each global batch, as GlobalBatchSampler cuts it."""
    per_rank = GLOBAL_BATCH // distributed.world_size()
    rows = slice(distributed.rank() * per_rank, (distributed.rank() + 1) * per_rank)
    return [(*(tensor[rows] for tensor in batch), ('',) * per_rank) for batch in batches]  # no unreadable file


def train(model, teacher, batches, optimizer, args, epoch=1):
    job = Job(
        distribute(model, CPU, METHODS[args['method']].stages(args)),
        teacher,
        my_share(batches),
        optimizer,
        torch.amp.GradScaler('cpu', enabled=False),
        None,
        args,
        CPU,
        LogModuleController([], enabled=False),
    )
    train_epoch(job, epoch, TrainState(), StopSignal(), lambda: None)


def step_check():
    """{'grads': after one step, 'weights': after three plain-SGD steps}."""
    teacher, model, args = build()
    batches = global_batches(3)
    sgd = torch.optim.SGD(model.parameters(), lr=0.05)
    train(model, teacher, batches[:1], sgd, args)
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    train(model, teacher, batches[1:], sgd, args)
    return {'grads': grads, 'weights': {name: t.clone() for name, t in model.state_dict().items()}}


def layerdrop_check():
    """This rank's weights after three Adam steps with dropout, masking and LayerDrop on, every
    rank drawing its own random numbers."""
    teacher, model, args = build(noisy=True, dtype=torch.float32)
    torch.manual_seed(100 + distributed.rank())
    optimizer = build_optimizer(model)
    set_lrs(optimizer, 1, Schedule.of(args))
    train(model, teacher, global_batches(3, torch.float32), optimizer, args)
    return {name: t.clone() for name, t in model.state_dict().items()}


def throughput_check():
    """Rank 0's logged metrics and the run's telemetry totals after three steps, one interval each."""
    teacher, model, args = build(dtype=torch.float32)
    args = dict(args, log_interval=1)
    recorder = MetricRecorder()
    logger = LogModuleController([recorder] if distributed.is_main() else [], enabled=distributed.is_main())
    job = Job(
        distribute(model, CPU, METHODS[args['method']].stages(args)),
        teacher,
        my_share(global_batches(3, torch.float32)),
        torch.optim.SGD(model.parameters(), lr=0.01),
        torch.amp.GradScaler('cpu', enabled=False),
        None,
        args,
        CPU,
        logger,
        telemetry=Telemetry(CPU),
    )
    train_epoch(job, 1, TrainState(), StopSignal(), lambda: None)
    return {'records': recorder.records, 'totals': job.telemetry.totals}


def enroll_check(test_root):
    """(keys, unit full embeddings, mean unit segment embeddings) of every wav under test_root."""
    _, model, _ = build(dtype=torch.float32)
    keys = sorted(
        os.path.relpath(os.path.join(folder, name), test_root)
        for folder, _, names in os.walk(test_root)
        for name in names
        if name.endswith('.wav')
    )
    vectors = embed_utterances(model, test_root, keys, 4800, 3, CPU, show_progress=False)
    return None if vectors is None else {'keys': keys, 'full': vectors[0], 'segments': vectors[1]}


def main(out_dir, test_root):
    torch.set_num_threads(1)
    distributed.init('cpu')
    results = {
        'step': step_check(),
        'layerdrop': distributed.gather_objects(layerdrop_check()),
        'enroll': enroll_check(test_root),
        'throughput': throughput_check(),
    }
    if distributed.is_main():
        for name, value in results.items():
            torch.save(value, os.path.join(out_dir, f'{name}.pt'))
    distributed.shutdown()


if __name__ == '__main__':
    main(*sys.argv[1:])
