"""What every benchmark prints about the machine it ran on."""
import os
import platform


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (Linux), else what the platform module knows."""
    try:
        with open('/proc/cpuinfo') as file:
            for line in file:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def describe() -> str:
    """'CPU: <model>, <n> logical cores' (and the GPU when torch sees one)."""
    text = f'CPU: {cpu_model()}, {os.cpu_count()} logical cores'
    try:
        import torch
        if torch.cuda.is_available():
            text += f'; GPU: {torch.cuda.get_device_name()}'
    except ImportError:
        pass
    return text
