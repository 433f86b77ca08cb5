"""Large-margin fine-tuning (LMFT): a stage after any method's own, the SV path alone from the best
model, at the larger margin on the longer crops; its model kept apart (lmft.pt, results.json's 'lmft')."""

import json
import math
import signal
import sys

import pytest
import torch
import torch.nn.functional as F

from inference.model import load_model
from log.controller import LogModuleController
from models.aam import AAMSoftmax
from models.build import build_model
from models.speaker_net import SpeakerNet
from models.ssl import load_teacher
from tests.conftest import FAST, command, run_folder, run_main
from tests.test_resume import assert_same_run, interrupt, load
from tests.trainer.test_oskdft import ARGS, TINY, job_of, run_epoch
from trainer import methods
from trainer.methods import METHODS
from trainer.parts import build_optimizer

LMFT = ('epoch=2', 'lmft_epochs=1')  # 2 epochs of oskdft (6 steps of 4 x 2 s), then 12 LMFT steps of 2 x 6 s
MAIN_CROP, LMFT_CROP = 200 * 160, 6 * 16000


class ForbiddenTeacher(torch.nn.Module):
    def forward(self, *args, **kwargs):
        raise AssertionError('the teacher ran in LMFT')


@pytest.mark.parametrize('method', sorted(METHODS))
def test_an_lmft_step_trains_exactly_what_the_methods_sv_path_trains_without_the_teacher(method):
    args = dict(ARGS, method=method, kd_epochs=1, lmft_epochs=2)
    stages = METHODS[method].stages(args)
    assert len(stages) == len(METHODS[method].stages(dict(args, lmft_epochs=0))) + 1
    lmft = stages[-1]
    assert (lmft.lmft, lmft.epochs, lmft.margin, lmft.crop_seconds, lmft.batch_size) == (True, 2, 0.5, 6.0, 64)
    torch.manual_seed(0)
    model = build_model(args, load_teacher('tiny', TINY), num_classes=4)
    for adapter in model.student.adapters():
        torch.nn.init.normal_(adapter.up.weight, std=0.1)
    optimizer = build_optimizer(model)
    clean = torch.randn(4, 8000)
    job = job_of(model, ForbiddenTeacher(), [(clean, clean + 0.1, torch.arange(4))], optimizer, **args)
    job.stages = (lmft,)
    state, finished = run_epoch(job)
    assert finished and state.skipped == 0
    means = state.means()
    assert means['kd'] == means['kd_mse'] == 0 and means['sv'] == means['total'] > 0
    trained = {id(p) for group in optimizer.param_groups for p in group['params']}
    for name, p in model.named_parameters():
        if id(p) in trained:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
    expected = {'oskdft': 3, 'ft': 2, 'student_ft': 2, 'kd_ft': 2, 'frozen': 1}[method]  # groups the SV path trains
    assert len(optimizer.param_groups) == expected
    # the step's LR: the first of the one-epoch warm-up (1 step an epoch here: the whole lmft_lr)
    assert optimizer.param_groups[0]['lr'] == pytest.approx(1e-4 * math.exp(0 * math.log(0.25)))


def test_the_lmft_schedule_warms_up_over_one_epoch_then_falls_exponentially_to_lmft_lr_final():
    args = dict(ARGS, lmft_epochs=4, lmft_lr=1e-4, lmft_lr_final=2.5e-5, adapter_lr_ratio=10.0)
    lrs = [methods.lmft_lrs(epoch, step, 10, args) for epoch in range(1, 5) for step in range(10)]
    backend = [lr['backend'] for lr in lrs]
    assert backend[0] == pytest.approx(1e-4 * 0.1) and backend[9] == pytest.approx(1e-4 * 0.25 ** (9 / 40))
    assert backend[39] == pytest.approx(1e-4 * 0.25 ** (39 / 40))  # the last step: close to lmft_lr_final
    assert all(later < earlier for earlier, later in zip(backend[10:], backend[11:]))
    assert all(lr['student'] == lr['backend'] and lr['adapter'] == 10 * lr['backend'] for lr in lrs)


@pytest.fixture(scope='module')
def lmft_run(corpus, tmp_path_factory):
    """An oskdft run with LMFT, in this process, recording what reaches the model at every training
    step (crop, batch, the AAM margin, the paths, the teacher) and the weights at LMFT's first step."""
    import main

    record = {'steps': [], 'teacher_calls': [], 'first_lmft': None, 'head': None}
    forward, head_forward, teacher_forward = SpeakerNet.forward, AAMSoftmax.forward, methods.frozen_forward

    def recording_forward(self, wave, labels, paths='kd+sv'):
        record['steps'].append((wave.shape[-1], wave.shape[0], self.head.margin, paths))
        if wave.shape[-1] == LMFT_CROP and record['first_lmft'] is None:
            record['first_lmft'] = {name: tensor.clone() for name, tensor in self.state_dict().items()}
        return forward(self, wave, labels, paths)

    def recording_head(self, emb, labels):
        loss, accuracy = head_forward(self, emb, labels)
        if record['first_lmft'] is not None and record['head'] is None:
            record['head'] = (emb.detach().clone(), labels.clone(), loss.detach().clone(), self.weight.detach().clone())
            record['class_weights'] = self.class_weights.clone()
        return loss, accuracy

    def recording_teacher(*args):
        record['teacher_calls'].append(len(record['steps']))
        return teacher_forward(*args)

    patch = pytest.MonkeyPatch()
    patch.setattr(SpeakerNet, 'forward', recording_forward)
    patch.setattr(AAMSoftmax, 'forward', recording_head)
    patch.setattr(methods, 'frozen_forward', recording_teacher)
    path_log = tmp_path_factory.mktemp('lmft')
    paths = [f'{key}={value}' for key, value in corpus.items()]
    try:
        main.main(paths + FAST + ['name=run', *LMFT, f'path_log={path_log}'])
    finally:
        patch.undo()
    return run_folder(path_log), record


def test_lmft_trains_on_longer_crops_at_half_the_batch_with_the_larger_margin_sv_path_alone(lmft_run):
    folder, record = lmft_run
    steps = record['steps']
    assert steps[:12] == [(MAIN_CROP, 4, 0.2, 'kd+sv')] * 6 + [(MAIN_CROP, 4, 0.2, 'sv')] * 6  # KD weight 0 in epoch 2
    assert steps[12:] == [(LMFT_CROP, 2, 0.5, 'sv')] * 12
    assert record['teacher_calls'] == list(range(6))  # before each of epoch 1's steps' forwards, only


def test_the_lmft_loss_is_aam_softmax_at_margin_0_5_by_hand(lmft_run):
    _, record = lmft_run
    emb, labels, loss, weight = record['head']
    cosine = F.normalize(emb.float()) @ F.normalize(weight).T  # (B, classes)

    def by_hand(margin):
        target = cosine.gather(1, labels[:, None])[:, 0]
        theta = torch.acos(target.clamp(-1, 1))
        logits = cosine.clone()
        logits[torch.arange(len(labels)), labels] = torch.cos(theta + margin)
        losses = F.cross_entropy(30 * logits, labels, reduction='none')
        weights = record['class_weights'][labels]
        return (weights * losses).sum() / weights.sum()

    assert loss.item() == pytest.approx(by_hand(0.5).item(), rel=1e-5)
    assert loss.item() != pytest.approx(by_hand(0.2).item(), rel=1e-3)  # the main stages' margin would differ


def test_lmft_starts_from_best_pt_and_its_model_is_kept_and_scored_apart(lmft_run):
    folder, record = lmft_run
    best, last, lmft = (load(folder / name) for name in ('best.pt', 'last.pt', 'lmft.pt'))
    results = json.loads((folder / 'results.json').read_text())
    assert results['best_epoch'] == best['epoch'] == 1, 'this check needs a best epoch before the last main one'
    metrics = [json.loads(line) for line in (folder / 'metrics.jsonl').open()]
    assert any(m['name'] == 'eval/Vox1-O/eer' and m['step'] == 2 for m in metrics)  # epoch 2 was not the best
    for name, tensor in best['model'].items():
        assert torch.equal(record['first_lmft'][name], tensor), name
    assert (lmft['epoch'], lmft['best']['epoch'], last['lmft_best']['epoch']) == (3, 3, 3)
    assert all(torch.equal(lmft['model'][name], tensor) for name, tensor in last['model'].items())
    assert set(results['lmft']) == {'Vox1-O', 'Vox1-E', 'Vox1-H', 'best_epoch'} and results['lmft']['best_epoch'] == 3
    eval_o = {m['step']: m['value'] for m in metrics if m['name'] == 'lmft/eval/Vox1-O/eer'}
    assert eval_o == {3: results['lmft']['Vox1-O']['eer']}  # scored after the LMFT epoch, its own curve
    assert {m['step'] for m in metrics if m['name'] == 'lmft/loss/sv'} == {3}
    assert not any(m['name'] == 'loss/sv' and m['step'] == 3 for m in metrics)
    assert {'lmft_loss.png', 'lmft_eer.png', 'lmft_lr.png', 'det_Vox1-O-lmft.png'} <= {
        path.name for path in (folder / 'plots').iterdir()
    }
    assert '## Scores after large-margin fine-tuning (epoch 3)' in (folder / 'results.md').read_text()
    model, _ = load_model(lmft, {}, LogModuleController([], enabled=False), torch.device('cpu'))
    assert all(torch.equal(model.state_dict()[name], tensor) for name, tensor in lmft['model'].items())


def test_a_run_killed_within_lmft_resumes_to_the_uninterrupted_weights(corpus, lmft_run, tmp_path):
    """Resumed within LMFT's epoch: its crops, batch, margin, per-step LRs and optimizer (not reset
    again) come back; the best model of the main stages (for their final scores) from best.pt."""
    run = command(corpus, tmp_path, *LMFT, 'checkpoint_minutes=0')  # last.pt after every step
    killed = interrupt(run, tmp_path, signal.SIGKILL, 'epoch 2 done, 2 steps of the next')
    assert killed.returncode == -signal.SIGKILL
    folder = run_folder(tmp_path)
    saved = load(folder / 'last.pt')
    assert saved['epoch'] == 2 and 2 <= saved['step'] < 12
    run_main(sys.executable, 'main.py', f'resume={folder / "last.pt"}')
    assert_same_run(folder, lmft_run[0])
    got, expected = load(folder / 'lmft.pt'), load(lmft_run[0] / 'lmft.pt')
    assert all(torch.equal(got['model'][name], tensor) for name, tensor in expected['model'].items())
