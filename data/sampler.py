"""The order of the training items: global batches, each split across the processes."""

import numpy as np
import torch


class GlobalBatchSampler(torch.utils.data.Sampler):
    """Each epoch, a permutation of the items fixed by (seed, epoch), cut into global batches of
    batch_size (the remainder dropped); rank r takes its contiguous slice of every batch.

    The global batches are the same whatever the number of processes, so a run resumed on another
    number of processes sees the same data, and an epoch can start at any step without reading
    the batches before it."""

    def __init__(self, num_items, batch_size, rank=0, world_size=1, seed=1):
        if batch_size % world_size:
            raise ValueError(
                f'batch_size={batch_size} is the total over {world_size} processes: make it a multiple of {world_size}'
            )
        if num_items < batch_size:
            raise ValueError(f'batch_size={batch_size} is larger than the {num_items} training utterances')
        self.num_items = num_items
        self.batch_size = batch_size
        self.per_rank = batch_size // world_size
        self.rank = rank
        self.seed = seed
        self.steps_per_epoch = num_items // batch_size
        self.epoch = 0
        self.start_step = 0

    def set_epoch(self, epoch, start_step=0):
        """The epoch to draw (1-based) and the number of its steps already done."""
        self.epoch = epoch
        self.start_step = start_step

    def __len__(self):
        return self.steps_per_epoch - self.start_step

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_items)
        for step in range(self.start_step, self.steps_per_epoch):
            start = step * self.batch_size + self.rank * self.per_rank
            yield order[start : start + self.per_rank].tolist()
