"""Where a resumed run takes its best model from: best.pt, or last.pt itself when a kill came
between writing last.pt and best.pt at the end of an improving epoch."""

import pytest
import torch

from log.controller import LogModuleController
from models.build import build_model
from models.ssl import load_teacher
from tests.trainer.test_oskdft import ARGS, TINY, job_of
from trainer.train import TrainState, build_optimizer, restore, save
from utils.checkpoint import load_checkpoint

META = {'num_classes': 5, 'params': None}


def new_job(tmp_path, seed):
    torch.manual_seed(seed)
    model = build_model(ARGS, load_teacher('tiny', TINY), num_classes=5)
    logger = LogModuleController.Builder('run', 'proj').use_local(str(tmp_path)).build()
    job = job_of(model, None, [], build_optimizer(model))
    job.logger = logger
    return job, logger


def test_best_weights_come_from_last_pt_when_best_pt_was_not_written(tmp_path):
    job, logger = new_job(tmp_path, seed=0)
    save(job, TrainState(epoch=2, best={'epoch': 2, 'eer': 10.0}), META)  # the improving epoch 2; killed before best.pt
    saved = load_checkpoint(f'{logger.run_dir}/last.pt')
    resumed, _ = new_job(tmp_path / 'other', seed=1)
    state, best_weights = restore(resumed, saved, logger.run_dir)
    for name, tensor in job.model.state_dict().items():
        assert torch.equal(best_weights[name], tensor), name
        assert torch.equal(resumed.model.state_dict()[name], tensor), name
    assert state.best == {'epoch': 2, 'eer': 10.0} and state.epoch == 2


def test_best_weights_come_from_best_pt_within_a_later_epoch(tmp_path):
    job, logger = new_job(tmp_path, seed=0)
    save(job, TrainState(epoch=1, best={'epoch': 1, 'eer': 12.0}), META, best_too=True)
    best_weights = {name: tensor.clone() for name, tensor in job.model.state_dict().items()}
    with torch.no_grad():
        for p in job.model.parameters():
            p.add_(1.0)  # the weights move on in epoch 2
    save(job, TrainState(epoch=1, step=3, best={'epoch': 1, 'eer': 12.0}), META)
    resumed, _ = new_job(tmp_path / 'other', seed=1)
    state, restored_best = restore(resumed, load_checkpoint(f'{logger.run_dir}/last.pt'), logger.run_dir)
    assert state.step == 3
    for name, tensor in best_weights.items():
        assert torch.equal(restored_best[name], tensor), name
    assert not torch.equal(
        resumed.model.student.adapters()[0].down.weight,
        best_weights['student.ssl.encoder.layers.0.feed_forward.adapter.down.weight'],
    )


def test_a_best_pt_of_another_epoch_is_refused(tmp_path):
    job, logger = new_job(tmp_path, seed=0)
    save(job, TrainState(epoch=1, best={'epoch': 1, 'eer': 12.0}), META, best_too=True)
    save(job, TrainState(epoch=2, step=2, best={'epoch': 2, 'eer': 11.0}), META)  # best.pt of epoch 2 was lost
    resumed, _ = new_job(tmp_path / 'other', seed=1)
    with pytest.raises(ValueError, match=r'best.pt holds epoch 1, the run\'s best is epoch 2'):
        restore(resumed, load_checkpoint(f'{logger.run_dir}/last.pt'), logger.run_dir)
