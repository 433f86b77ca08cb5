"""What every benchmark prints about the machine it ran on (utils.hardware, the run logs' source too)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.hardware import cpu_model, describe  # noqa: E402

__all__ = ['cpu_model', 'describe']
