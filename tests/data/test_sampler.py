"""Global batches: the same for any number of processes, split without overlap, resumable mid-epoch."""

import pytest

from data.sampler import GlobalBatchSampler


def batches(world, epoch=1, start_step=0, num_items=50, batch_size=8, seed=3):
    """[step][rank] -> indices."""
    samplers = [GlobalBatchSampler(num_items, batch_size, rank, world, seed) for rank in range(world)]
    for sampler in samplers:
        sampler.set_epoch(epoch, start_step)
    return list(zip(*(list(sampler) for sampler in samplers)))


def test_an_epoch_is_a_permutation_cut_into_global_batches_whatever_the_number_of_processes():
    alone = [step[0] for step in batches(1)]
    assert len(alone) == 6 and all(len(batch) == 8 for batch in alone)  # 50 // 8 steps, remainder dropped
    seen = [index for batch in alone for index in batch]
    assert len(set(seen)) == 48 and set(seen) <= set(range(50))
    for world in (2, 4, 8):
        split = batches(world)
        assert [sum(step, []) for step in split] == alone  # rank slices in rank order
        assert all(len(part) == 8 // world for step in split for part in step)


def test_epochs_differ_and_are_reproducible():
    assert batches(1, epoch=1) == batches(1, epoch=1)
    assert batches(1, epoch=1) != batches(1, epoch=2)


def test_a_resumed_epoch_yields_exactly_the_remaining_batches():
    full = batches(2, epoch=4)
    assert batches(2, epoch=4, start_step=4) == full[4:]
    sampler = GlobalBatchSampler(50, 8, 0, 2, 3)
    sampler.set_epoch(4, 4)
    assert len(sampler) == 2 and sampler.steps_per_epoch == 6


@pytest.mark.parametrize(
    'num_items, batch_size, world, message',
    [
        (50, 6, 4, 'batch_size=6 is the total over 4 processes: make it a multiple of 4'),
        (5, 8, 1, 'batch_size=8 is larger than the 5 training utterances'),
    ],
)
def test_impossible_batch_sizes_are_named(num_items, batch_size, world, message):
    with pytest.raises(ValueError, match=message):
        GlobalBatchSampler(num_items, batch_size, 0, world)
