"""Two processes (torchrun, gloo on CPU) against one process with the same global batch."""

import os
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import ROOT
from tests.trainer import ddp_worker


def torchrun(*args, timeout=300):
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', *map(str, args)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope='module')
def two_processes(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp('ddp')
    start = time.monotonic()
    done = torchrun(os.path.join(ROOT, 'tests', 'trainer', 'ddp_worker.py'), out, corpus['path_test'])
    assert done.returncode == 0, done.stderr[-4000:]
    print(f'2-process checks: {time.monotonic() - start:.1f} s')
    return {
        name: torch.load(out / f'{name}.pt', weights_only=True)
        for name in ('step', 'layerdrop', 'enroll', 'throughput')
    }


@pytest.fixture(scope='module')
def one_process():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return ddp_worker.step_check()
    finally:
        torch.set_num_threads(threads)


def assert_relatively_close(actual, expected, tolerance=1e-5):
    assert actual.keys() == expected.keys()
    for name in expected:
        scale = expected[name].double().abs().max().clamp(min=1e-8)  # floor: gradients 0 in exact arithmetic
        difference = (actual[name].double() - expected[name].double()).abs().max()
        assert difference <= tolerance * scale, f'{name}: {difference:.3e} vs scale {scale:.3e}'


def test_averaged_gradients_equal_one_process_with_the_global_batch(two_processes, one_process):
    grads = two_processes['step']['grads']
    assert any(name.startswith('backend.bn_pool') for name in grads)  # synchronised BatchNorm
    assert any(name.startswith('student.ssl.encoder.layers.1') for name in grads)
    assert any('adapter' in name for name in grads) and 'head.weight' in grads
    assert_relatively_close(grads, one_process['grads'])


def test_weights_after_three_sgd_steps_equal_one_process(two_processes, one_process):
    weights = two_processes['step']['weights']
    assert_relatively_close(weights, one_process['weights'])  # BatchNorm running statistics included
    assert weights['backend.bn_pool.num_batches_tracked'].item() == 3


def test_with_layerdrop_dropout_and_masking_every_rank_holds_the_same_weights(two_processes):
    first, second = two_processes['layerdrop']
    _, untrained, _ = ddp_worker.build(noisy=True, dtype=torch.float32)
    assert not torch.equal(
        first['student.ssl.encoder.layers.0.attention.k_proj.weight'],
        untrained.state_dict()['student.ssl.encoder.layers.0.attention.k_proj.weight'],
    )
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_sharded_enrollment_gives_the_single_process_keys_and_embeddings(two_processes, corpus):
    sharded = two_processes['enroll']
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = ddp_worker.enroll_check(corpus['path_test'])
    finally:
        torch.set_num_threads(threads)
    assert sharded['keys'] == alone['keys'] and len(alone['keys']) == 24  # test and validation utterances
    assert torch.equal(sharded['full'], alone['full'])
    assert torch.equal(sharded['segments'], alone['segments'])


def test_throughput_counts_the_utterances_of_both_ranks(two_processes):
    """Each rank steps through 2 utterances of every global batch of 4: the interval's utterances per
    second x its seconds per step is the global batch, and the run counted 3 x 4 utterances."""
    records, totals = two_processes['throughput']['records'], two_processes['throughput']['totals']
    values = {}
    for record in records:
        values.setdefault(record['name'], []).append(record['value'])
    assert len(values['perf/utterances_per_second']) == 3
    for per_second, per_step in zip(values['perf/utterances_per_second'], values['perf/seconds_per_step']):
        assert per_second * per_step == pytest.approx(ddp_worker.GLOBAL_BATCH)
    assert totals['utterances'] == 3 * ddp_worker.GLOBAL_BATCH and totals['steps'] == 3
    for rank in (0, 1):  # every rank's memory, gathered at the interval
        assert all(gib > 0.05 for gib in values[f'perf/cpu_resident_gib/rank{rank}'])
