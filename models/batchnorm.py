"""Batch normalisation whose training statistics cover the global batch of every process.

torch's SyncBatchNorm runs only on GPUs; this one runs wherever the process group does (gloo on
CPU, NCCL on CUDA), so the multi-process tests check it on any machine. In one process, or in
eval mode, it is exactly nn.BatchNorm1d (same parameters, buffers and state_dict keys).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.distributed import AllReduceSum, rank, world_size


class SyncBatchNorm1d(nn.BatchNorm1d):
    def forward(self, x):  # (B, C) or (B, C, T)
        if not self.training or world_size() == 1:
            return super().forward(x)
        mean, var = global_mean_var(x)
        if self.track_running_stats:
            self.update_running_stats(mean, var, count=x.numel() // x.shape[1] * world_size())
        shape = (1, -1) + (1,) * (x.dim() - 2)
        normalised = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return normalised * self.weight.view(shape) + self.bias.view(shape) if self.affine else normalised

    @torch.no_grad()
    def update_running_stats(self, mean, var, count):
        """As nn.BatchNorm1d does: an exponential (or, momentum None, cumulative) average of the
        mean and of the unbiased variance."""
        self.num_batches_tracked.add_(1)
        factor = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.item()
        self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
        self.running_var.lerp_((var.detach() * count / max(count - 1, 1)).to(self.running_var.dtype), factor)


def global_mean_var(x):
    """Per-channel mean and biased variance over every rank's batch, (C,) each, differentiable.
    Each rank's count, mean and sum of squared deviations are combined with Chan's formula, which
    keeps the precision of a two-pass variance."""
    dims = [0] + list(range(2, x.dim()))
    count = x.numel() // x.shape[1]
    if x.dtype in (torch.float16, torch.bfloat16):  # under autocast: statistics in float32, as cuDNN keeps them
        x = x.float()
    var, mean = torch.var_mean(x, dim=dims, unbiased=False)  # (C,) each
    local = torch.cat([x.new_full((1,), count), mean, var * count])  # (1 + 2C,)
    table = F.pad(local[None], (0, 0, rank(), world_size() - rank() - 1))  # this rank's row, (W, 1 + 2C)
    table = AllReduceSum.apply(table)
    counts, means, squares = table[:, :1], table[:, 1 : 1 + x.shape[1]], table[:, 1 + x.shape[1] :]
    total = counts.sum()
    mean = (counts * means).sum(0) / total
    var = (squares + counts * (means - mean) ** 2).sum(0) / total
    return mean, var
