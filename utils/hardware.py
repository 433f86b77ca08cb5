"""The machine a run or a benchmark uses, and the memory a process has needed so far."""

import os
import platform
import resource
import sys

import torch

GIB = 2**30


def cpu_model():
    """The CPU's name from /proc/cpuinfo (Linux), else what the platform module knows."""
    try:
        with open('/proc/cpuinfo') as file:
            for line in file:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def available_cores():
    """The cores this process may run on (a job scheduler's share), all of them where unknown."""
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()


def describe_machine():
    """This machine's CPU, its visible GPUs, and the torch / CUDA versions, as a dict for results.json."""
    gpus = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    return {
        'cpu': cpu_model(),
        'cpu_cores': os.cpu_count(),
        'cpu_cores_available': available_cores(),
        'gpus': gpus,
        'gpu_count': len(gpus),
        'torch': torch.__version__,
        'cuda': torch.version.cuda,
    }


def describe():
    """'CPU: <model>, <n> logical cores' (and the GPU when torch sees one): one line for a benchmark."""
    text = f'CPU: {cpu_model()}, {os.cpu_count()} logical cores'
    if torch.cuda.is_available():
        text += f'; GPU: {torch.cuda.get_device_name()}'
    return text


def peak_resident_bytes():
    """The most resident memory (RSS) this process has held since it started."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == 'darwin' else peak * 1024  # bytes on macOS, KiB on Linux


def peak_memory_bytes(device):
    """(peak allocated, peak reserved, capacity) of a GPU since the process started, in bytes; on a
    CPU (peak resident memory, the same, 0): the capacity a CPU process may use is not known."""
    if device.type == 'cuda':
        return (
            torch.cuda.max_memory_allocated(device),
            torch.cuda.max_memory_reserved(device),
            torch.cuda.get_device_properties(device).total_memory,
        )
    peak = peak_resident_bytes()
    return peak, peak, 0


def gpu_summary(hardware, none='no GPU'):
    """'2 x NVIDIA H100 80GB HBM3' (each kind with its count) of a hardware() dict; none without GPUs."""
    return ', '.join(f'{hardware["gpus"].count(name)} x {name}' for name in sorted(set(hardware['gpus']))) or none
