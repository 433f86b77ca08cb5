"""Seeding of every random source the experiment uses."""

import random

import numpy as np
import torch


def seed_everything(seed):
    """Python, NumPy (Hugging Face's time masking draws from it) and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
