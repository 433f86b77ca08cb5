"""Where a resumed run takes its best model from: best.pt, or last.pt itself when a kill came
between writing last.pt and best.pt at the end of an improving epoch."""

import pytest
import torch

from log.controller import LogModuleController
from models.build import build_model
from models.ssl import load_teacher
from tests.trainer.test_oskdft import ARGS, TINY, job_of
from trainer.parts import build_optimizer
from trainer.report import continue_command
from trainer.state import TrainState, own_sums, restore, save
from utils import distributed
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
    state, best_weights, _ = restore(resumed, saved, logger.run_dir)
    for name, tensor in job.model.state_dict().items():
        assert torch.equal(best_weights[name], tensor), name
        assert torch.equal(resumed.model.state_dict()[name], tensor), name
    assert state.best == {'epoch': 2, 'eer': 10.0} and state.epoch == 2


def test_best_weights_come_from_best_pt_within_a_later_epoch(tmp_path):
    job, logger = new_job(tmp_path, seed=0)
    save(job, TrainState(epoch=1, best={'epoch': 1, 'eer': 12.0}), META, also='best.pt')
    best_weights = {name: tensor.clone() for name, tensor in job.model.state_dict().items()}
    with torch.no_grad():
        for p in job.model.parameters():
            p.add_(1.0)  # the weights move on in epoch 2
    save(job, TrainState(epoch=1, step=3, best={'epoch': 1, 'eer': 12.0}), META)
    resumed, _ = new_job(tmp_path / 'other', seed=1)
    state, restored_best, _ = restore(resumed, load_checkpoint(f'{logger.run_dir}/last.pt'), logger.run_dir)
    assert state.step == 3
    for name, tensor in best_weights.items():
        assert torch.equal(restored_best[name], tensor), name
    assert not torch.equal(
        resumed.model.student.adapters()[0].down.weight,
        best_weights['student.ssl.encoder.layers.0.feed_forward.adapter.down.weight'],
    )


def test_a_best_pt_of_another_epoch_is_refused(tmp_path):
    job, logger = new_job(tmp_path, seed=0)
    save(job, TrainState(epoch=1, best={'epoch': 1, 'eer': 12.0}), META, also='best.pt')
    save(job, TrainState(epoch=2, step=2, best={'epoch': 2, 'eer': 11.0}), META)  # best.pt of epoch 2 was lost
    resumed, _ = new_job(tmp_path / 'other', seed=1)
    with pytest.raises(ValueError, match=r'best.pt holds epoch 1, the run\'s best is epoch 2'):
        restore(resumed, load_checkpoint(f'{logger.run_dir}/last.pt'), logger.run_dir)


@pytest.mark.parametrize(
    'launched, world, per_machine, expected',
    [
        (False, 1, None, 'python main.py resume=last.pt'),
        (True, 2, '2', 'torchrun --nproc_per_node=2 main.py resume=last.pt'),
        (
            True,
            4,
            '2',
            'torchrun --nnodes=2 --nproc_per_node=2 --rdzv_backend=c10d --rdzv_endpoint=HOST:PORT main.py '
            'resume=last.pt (on each of the 2 machines)',
        ),
    ],
)
def test_the_command_that_continues_a_stopped_run_starts_it_as_it_was(
    monkeypatch, launched, world, per_machine, expected
):
    monkeypatch.delenv('TORCHELASTIC_RUN_ID', raising=False)
    if launched:
        monkeypatch.setenv('TORCHELASTIC_RUN_ID', 'job')
        monkeypatch.setenv('LOCAL_WORLD_SIZE', per_machine)
    monkeypatch.setattr(distributed, 'world_size', lambda: world)
    assert continue_command('last.pt') == expected


def test_a_resumed_rank_takes_its_own_loss_sums_or_rank_0_their_total():
    """Every rank's sums of the epoch in progress are saved: the same job size puts each back where
    it was; another size gives rank 0 the total, so the epoch's mean still counts every step."""
    saved = torch.tensor([[1.0, 2.0, 3.0], [10.0, 20.0, 3.0]], dtype=torch.float64)  # (world 2, sums)
    assert own_sums(saved, 1, same_world=True).tolist() == [10.0, 20.0, 3.0]
    assert own_sums(saved, 0, same_world=False).tolist() == [11.0, 22.0, 6.0]
    assert own_sums(saved, 2, same_world=False).tolist() == [0.0, 0.0, 0.0]
    assert own_sums(saved[0], 0, same_world=True).tolist() == [1.0, 2.0, 3.0]  # an earlier version's (sums,)
