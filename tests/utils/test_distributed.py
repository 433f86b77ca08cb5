"""The process helpers: collectives in one process and in a job that `spawn` starts, and a
failing process ending the job."""

import os
import time

import pytest
import torch
from torch.multiprocessing import ProcessRaisedException

from evaluation.evaluate import interleave, shard
from utils import distributed


def collectives(out_path):
    distributed.init('cpu')
    rank = distributed.rank()
    found = {
        'sum': distributed.sum_over_ranks(torch.tensor([rank + 1.0, 10.0])),
        'any': distributed.any_rank(torch.tensor([rank == 1, False, True])),
        'gathered': distributed.gather_objects({'rank': rank}),
        'broadcast': distributed.broadcast_object(f'from rank {rank}'),
        'world': distributed.world_size(),
    }
    if distributed.is_main():
        torch.save(found, out_path)
    distributed.shutdown()


def fails_on_rank_1():
    distributed.init('cpu')
    if distributed.rank() == 1:
        raise ValueError('path_test: rank 1 cannot read x.wav')
    distributed.barrier()  # rank 0 would wait here for ever


def test_collectives_in_one_process_are_the_identity():
    assert distributed.sum_over_ranks(torch.tensor([2.0])).item() == 2.0
    assert distributed.any_rank(torch.tensor([True, False])).tolist() == [True, False]
    assert distributed.gather_objects('x') == ['x'] and distributed.broadcast_object('y') == 'y'


def test_spawn_starts_a_job_whose_collectives_combine_the_ranks(tmp_path):
    distributed.spawn(collectives, 2, str(tmp_path / 'found.pt'))
    found = torch.load(tmp_path / 'found.pt', weights_only=False)
    assert found['sum'].tolist() == [3.0, 20.0]
    assert found['any'].tolist() == [True, False, True]
    assert found['gathered'] == [{'rank': 0}, {'rank': 1}]
    assert found['broadcast'] == 'from rank 0' and found['world'] == 2


def test_a_spawned_process_that_raises_ends_the_job_with_its_message():
    start = time.monotonic()
    with pytest.raises(ProcessRaisedException, match='path_test: rank 1 cannot read x.wav'):
        distributed.spawn(fails_on_rank_1, 2)
    assert time.monotonic() - start < 60


@pytest.mark.parametrize('count, world', [(7, 3), (2, 4), (10, 2), (5, 1)])
def test_shards_are_disjoint_cover_every_key_and_interleave_back_in_order(count, world):
    keys = [f'id{i:05d}/v/{i}.wav' for i in range(count)]
    shards = [shard(keys, rank, world) for rank in range(world)]
    assert sorted(key for part in shards for key in part) == keys
    rows = [torch.tensor([[keys.index(key)] for key in part], dtype=torch.float32) if part else None for part in shards]
    assert interleave(rows, count)[:, 0].tolist() == list(range(count))


def test_on_several_machines_each_machine_shares_its_own_cores(monkeypatch):
    """4 processes on 2 machines of 8 cores: 2 processes a machine, 4 data workers each (not 8 / 4)."""
    monkeypatch.setattr(distributed, 'world_size', lambda: 4)
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: set(range(8)), raising=False)
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '2')
    assert distributed.machines() == 2 and distributed.data_workers('auto') == 4
    monkeypatch.delenv('LOCAL_WORLD_SIZE')  # no launcher said: one machine
    assert distributed.machines() == 1 and distributed.data_workers('auto') == 2
