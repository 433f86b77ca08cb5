"""Processes and collectives: the same calls whether one process runs or many.

A job of N processes is started by torchrun (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
MASTER_ADDR/PORT in the environment) or by `spawn` below; `init` joins it. On several machines RANK
numbers the processes of the whole job (rank 0 alone writes) and LOCAL_RANK those of one machine
(it picks the GPU). Every other function here works unchanged in a single process, where a
collective is the identity.
"""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def rank():
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size():
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main():
    return rank() == 0


def local_world_size():
    """The job's processes on this machine: torchrun's LOCAL_WORLD_SIZE (all of them in one process)."""
    return int(os.environ.get('LOCAL_WORLD_SIZE', world_size()))


def machines():
    """How many machines the job runs on (torchrun starts as many processes on each)."""
    return max(1, world_size() // local_world_size())


def barrier():
    if world_size() > 1:
        dist.barrier()


def launched_as_job():
    """True in a process that torchrun or `spawn` started as one rank of a job."""
    return 'RANK' in os.environ and 'WORLD_SIZE' in os.environ


def init(device_type):
    """Joins the job described by the environment (NCCL on CUDA, gloo on CPU) and returns this
    process's device: cuda:LOCAL_RANK or cpu. A lone process joins nothing."""
    local_rank = int(os.environ.get('LOCAL_RANK', 0))
    device = torch.device('cuda', local_rank) if device_type == 'cuda' else torch.device('cpu')
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    if launched_as_job() and int(os.environ['WORLD_SIZE']) > 1 and not dist.is_initialized():
        kwargs = {'device_id': device} if device.type == 'cuda' else {}
        dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo', **kwargs)
    return device


def shutdown():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def data_workers(setting):
    """DataLoader workers per process: `num_workers` as set, or for 'auto' this machine's cores
    shared among the job's processes on it."""
    if setting != 'auto':
        return int(setting)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)
    return max(1, cores // local_world_size())


def spawn(worker, nprocs, *args):
    """Runs worker(*args) in nprocs new processes that form one job on this machine, as torchrun
    would start them. When one of them fails, the others are stopped and the failure is raised here."""
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()), WORLD_SIZE=str(nprocs))
    mp.spawn(_run_as_rank, args=(worker, nprocs, args), nprocs=nprocs, join=True)


def _run_as_rank(local_rank, worker, nprocs, args):
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank), LOCAL_WORLD_SIZE=str(nprocs))
    if 'OMP_NUM_THREADS' not in os.environ:  # the CPU cores shared out, as torchrun does
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // nprocs))
    worker(*args)


def any_rank(flags):
    """Element-wise OR of a bool tensor over the ranks: every rank gets the same answer."""
    if world_size() == 1:
        return flags
    flags = flags.to(torch.int32)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return flags.bool()


def sum_over_ranks(tensor):
    """The element-wise sum of a tensor over the ranks (no gradient)."""
    if world_size() > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


def gather_rows(row):
    """Every rank's 1-D tensor (n,) stacked in rank order: (world, n) on every rank."""
    if world_size() == 1:
        return row[None]
    rows = [torch.empty_like(row) for _ in range(world_size())]
    dist.all_gather(rows, row)
    return torch.stack(rows)


def broadcast_object(obj):
    """Rank 0's obj on every rank (any picklable value)."""
    if world_size() == 1:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_objects(obj):
    """[obj of rank 0, obj of rank 1, ...] on rank 0; None on the other ranks."""
    if world_size() == 1:
        return [obj]
    gathered = [None] * world_size() if is_main() else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


class AllReduceSum(torch.autograd.Function):
    """Sum over the ranks that gradients flow through: the gradient of each rank's input is the
    sum of the gradients of every rank's output (what statistics shared by all ranks need)."""

    @staticmethod
    def forward(ctx, tensor):
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad
