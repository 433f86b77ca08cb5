"""A checkpoint round-trips through torch.load(weights_only=True), and a failed save keeps the old file."""

import os
from dataclasses import dataclass

import pytest
import torch

from utils.checkpoint import load_checkpoint, save_checkpoint


@dataclass
class Progress:
    epoch: int
    best: dict

    def to_checkpoint(self):
        return {'epoch': self.epoch, 'best': dict(self.best)}


def test_checkpoint_round_trips_with_weights_only_and_a_failed_save_keeps_the_old_one(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    scaler = torch.amp.GradScaler('cpu', enabled=False)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    path = str(tmp_path / 'last.pt')
    args = {'model_name_or_path': 'tiny', 'lr': 1e-4}
    rng = [{'torch': torch.get_rng_state()}]
    save_checkpoint(path, Progress(3, {'epoch': 2, 'eer': float('inf')}), model, optimizer, scaler, rng, args=args,
                    num_classes=2)  # fmt: skip
    loaded = load_checkpoint(path)
    assert loaded['epoch'] == 3 and loaded['best'] == {'epoch': 2, 'eer': float('inf')}
    assert loaded['args'] == args and loaded['num_classes'] == 2
    torch.testing.assert_close(loaded['model'], model.state_dict(), rtol=0, atol=0)
    torch.testing.assert_close(loaded['optimizer'], optimizer.state_dict(), rtol=0, atol=0)
    assert torch.equal(loaded['rng'][0]['torch'], rng[0]['torch'])
    assert loaded['scaler'] == scaler.state_dict() and isinstance(loaded['saved_at'], float)

    with pytest.raises(Exception):
        save_checkpoint(path, Progress(4, {}), model, optimizer, scaler, rng, args=args, unpicklable=lambda: None)
    assert load_checkpoint(path)['epoch'] == 3
    assert os.listdir(tmp_path) == ['last.pt']
