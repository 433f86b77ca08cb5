"""The four methods of the paper's table: which model each builds, which parameters a step of
each trains, and each one's whole run on the small demo corpus."""

import copy
import json

import pytest
import torch

import main
from log.controller import LogModuleController
from models.build import STUDENT_SHAPES, build_model
from models.ssl import load_teacher, normalize_waves
from tests.conftest import FAST
from tests.trainer.test_oskdft import ARGS, TINY, job_of, run_epoch
from trainer.methods import METHODS, locate
from trainer.parts import build_optimizer, set_lrs
from trainer.schedule import Schedule
from trainer.state import TrainState
from trainer.train import Job, StopSignal, train_epoch

BATCH = 4


def one_step(method, epoch=1, **args):
    """(model before, model after, the step's loss values) of one SGD step of `method`."""
    args = dict(ARGS, method=method, kd_epochs=2, **args)
    torch.manual_seed(0)
    teacher = load_teacher('tiny', TINY)
    model = build_model(args, teacher, num_classes=5)
    for adapter in model.student.adapters():
        torch.nn.init.normal_(adapter.up.weight, std=0.1)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    clean = torch.randn(BATCH, 8000)
    batch = (clean, clean + 0.3 * torch.randn_like(clean), torch.arange(BATCH), ('',) * BATCH)
    optimizer = build_optimizer(model)
    set_lrs(optimizer, epoch, Schedule.of(args))
    job = Job(
        model,
        teacher if METHODS[method].uses_teacher else None,
        [batch],
        optimizer,
        torch.amp.GradScaler('cpu', enabled=False),
        None,
        args,
        torch.device('cpu'),
        LogModuleController([], enabled=False),
    )
    state = TrainState()
    train_epoch(job, epoch, state, StopSignal(), lambda: None)
    return before, model, state.means()


def changed(before, model, part):
    names = [name for name, _ in getattr(model, part).named_parameters()]
    return {
        name for name, p in model.named_parameters() if name.startswith(part + '.') and not torch.equal(p, before[name])
    }, names


@pytest.mark.parametrize(
    'method, layers, adapters', [('oskdft', 2, True), ('ft', 3, False), ('student_ft', 2, False), ('kd_ft', 2, False)]
)
def test_each_method_builds_its_student(method, layers, adapters):
    model = build_model(dict(ARGS, method=method), load_teacher('tiny', TINY), num_classes=5)
    assert len(model.student.ssl.encoder.layers) == layers  # ft: every teacher layer
    assert bool(model.student.adapters()) == adapters


def test_every_method_has_a_student_shape_to_rebuild_its_model_from_a_checkpoint():
    assert STUDENT_SHAPES.keys() == METHODS.keys()


@pytest.mark.parametrize('method', ['oskdft', 'ft', 'student_ft'])
def test_a_step_trains_the_student_the_back_end_and_the_head(method):
    before, model, losses = one_step(method)
    for part in ('student', 'backend', 'head'):
        moved, _ = changed(before, model, part)
        assert moved, f'{method}: no {part} parameter changed'
    assert (losses['kd'] > 0) == (method == 'oskdft') and losses['sv'] > 0


def first_layers(teacher, layers):
    """A plain Hugging Face model of the teacher's class holding its front end and first `layers`
    layers (no adapters), every weight trainable."""
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = layers
    ssl = type(teacher)(config).to(torch.float64)
    missing, unexpected = ssl.load_state_dict(teacher.state_dict(), strict=False)
    assert missing == [] and all(int(name.split('.')[2]) >= layers for name in unexpected)
    return ssl.requires_grad_(True)


@pytest.mark.parametrize('method, layers', [('ft', 3), ('student_ft', 2), ('frozen', 3)])
def test_one_step_of_an_sv_only_method_descends_the_sv_loss_of_the_teachers_first_layers(method, layers):
    """ft, student_ft and frozen: one SGD step (lr 1, over the groups build_optimizer makes) moves
    every weight by minus the gradient of the AAM loss of ECAPA-TDNN on the last hidden state of a
    plain copy of the teacher's first `layers` layers: no adapter, no KD term, no teacher run (None).
    frozen: that copy in eval mode and out of the step, only the back-end and the head train."""
    frozen = method == 'frozen'
    torch.manual_seed(0)
    teacher = load_teacher('tiny', TINY).double()
    model = build_model(dict(ARGS, method=method), teacher, num_classes=5).double()
    generator = torch.Generator().manual_seed(1)
    augmented = torch.randn(BATCH, 8000, generator=generator, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 4])

    ssl = first_layers(teacher, layers).train(not frozen).requires_grad_(not frozen)
    backend, head = copy.deepcopy(model.backend).train(), copy.deepcopy(model.head)
    parts = {'student.ssl.': ssl, 'backend.': backend, 'head.': head}
    reference = {prefix + name: p for prefix, part in parts.items() for name, p in part.named_parameters()}
    assert sorted(reference) == sorted(name for name, _ in model.named_parameters())  # no adapter anywhere
    for name, p in model.named_parameters():
        assert torch.equal(p, reference[name]), name
    sv_loss, accuracy = head(backend(ssl(augmented).last_hidden_state), labels)
    sv_loss.backward()

    optimizer = build_optimizer(model)
    assert [group['name'] for group in optimizer.param_groups] == ['backend'] + ['student'] * (not frozen)
    sgd = torch.optim.SGD([{'params': group['params']} for group in optimizer.param_groups], lr=1.0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    clean = torch.full_like(augmented, float('nan'))  # the teacher's input: nothing of it may reach the step
    state, finished = run_epoch(job_of(model, None, [(clean, augmented, labels)], sgd, method=method))

    losses = state.means()
    assert finished and state.step == 1 and state.skipped == 0
    assert losses['sv'] == pytest.approx(sv_loss.item(), rel=1e-12) and losses['total'] == losses['sv']
    assert losses['kd'] == 0 and losses['kd_mse'] == 0 and losses['accuracy'] == accuracy.item()
    for name, p in model.named_parameters():
        expected = reference[name].grad
        if expected is None:  # frozen's SSL model; the mask vector, with time masking off
            assert p.grad is None and torch.equal(p, before[name]), name
        else:
            torch.testing.assert_close(before[name] - p.detach(), expected, rtol=1e-9, atol=1e-12, msg=name)
    trained = {name.split('.')[0] for name, p in model.named_parameters() if p.grad is not None}
    assert trained == ({'backend', 'head'} if frozen else {'backend', 'head', 'student'})


def test_kd_ft_trains_only_the_student_by_kd_first_then_everything_by_sv():
    before, model, losses = one_step('kd_ft', epoch=2)  # kd_epochs=2: epoch 2 is KD only
    assert changed(before, model, 'student')[0]
    assert not changed(before, model, 'backend')[0] and not changed(before, model, 'head')[0]
    assert losses['kd'] > 0 and losses['sv'] == 0
    before, model, losses = one_step('kd_ft', epoch=3)  # the first fine-tuning epoch
    assert all(changed(before, model, part)[0] for part in ('student', 'backend', 'head'))
    assert losses['kd'] == 0 and losses['sv'] > 0


def test_kd_ft_stages_schedule_and_scoring():
    kd_ft, args = METHODS['kd_ft'], dict(ARGS, kd_epochs=3, epoch=4)
    stages = kd_ft.stages(args)
    assert kd_ft.epochs(args) == 7 and [stage.epochs for stage in stages] == [3, 4]
    assert [locate(stages, e) for e in range(1, 8)] == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (1, 4)]
    assert [stages[locate(stages, e)[0]].sv for e in range(1, 8)] == [False] * 3 + [True] * 4
    assert [stage.paths(1) for stage in stages] == [('kd',), ('sv',)]
    assert len(kd_ft.stages(dict(args, kd_epochs=0))) == 1


@pytest.mark.parametrize('method', ['ft', 'student_ft', 'kd_ft'])
def test_every_method_runs_on_the_demo_corpus_and_writes_the_same_run_folder(method, corpus, tmp_path):
    main.main(
        [f'{key}={value}' for key, value in corpus.items()]
        + FAST
        + ['epoch=1', 'kd_epochs=1', f'method={method}', f'path_log={tmp_path}', f'name={method}']
    )
    (folder,) = (tmp_path / 'OS-KDFT').iterdir()
    results = json.loads((folder / 'results.json').read_text())
    assert results['method'] == method and set(results) >= {'Vox1-O', 'Vox1-E', 'Vox1-H', 'best_epoch', 'params'}
    assert results['best_epoch'] == (2 if method == 'kd_ft' else 1)
    assert (folder / 'last.pt').is_file() and (folder / 'best.pt').is_file()
    saved = torch.load(folder / 'best.pt', weights_only=True)
    assert saved['args']['method'] == method
    eer_steps = [
        json.loads(line)['step']
        for line in (folder / 'metrics.jsonl').read_text().splitlines()
        if json.loads(line)['name'] == 'eval/Vox1-O/eer'
    ]
    assert eer_steps[:1] == ([2] if method == 'kd_ft' else [1])  # the KD stage is not scored


def test_normalize_wave_feeds_teacher_and_student_normalised_waves():
    """normalize_wave=true gives the step of waves normalised beforehand (teacher and student alike).
    (A per-frame front end: a group-norm one is nearly blind to the input's scale anyway.)"""
    torch.manual_seed(0)
    teacher = load_teacher('tiny', dict(TINY, feat_extract_norm='layer', do_stable_layer_norm=True))
    clean = 3.0 * torch.randn(BATCH, 8000) + 0.5
    augmented = clean + torch.randn_like(clean)
    losses = []
    prenormalised = (normalize_waves(clean), normalize_waves(augmented))
    for normalize, (a, b) in ((True, (clean, augmented)), (False, prenormalised)):
        torch.manual_seed(1)
        model = build_model(dict(ARGS, normalize_wave=normalize), teacher, num_classes=5).eval()
        (stage,) = METHODS['oskdft'].stages(dict(ARGS, normalize_wave=normalize))
        losses.append(stage.step(model, teacher, a, b, torch.arange(BATCH), 1)[1])
    torch.testing.assert_close(losses[0], losses[1])
    torch.manual_seed(1)
    plain = build_model(ARGS, teacher, num_classes=5).eval()
    unnormalised = METHODS['oskdft'].stages(ARGS)[0].step(plain, teacher, clean, augmented, torch.arange(BATCH), 1)[1]
    assert (unnormalised - losses[0]).abs().max() > 1e-2


def test_the_smoke_preset_runs_on_a_subset_of_the_users_files_and_scores_vox1_o(corpus, tmp_path):
    main.main(
        [f'{key}={value}' for key, value in corpus.items()]
        + FAST
        + ['preset=smoke', 'max_train_files=12', f'path_log={tmp_path}']
    )
    (folder,) = (tmp_path / 'OS-KDFT').iterdir()
    assert folder.name.startswith('smoke-')
    results = json.loads((folder / 'results.json').read_text())
    assert set(results) == {'Vox1-O', 'best_epoch', 'params', 'method', 'performance'} and results['best_epoch'] == 1
    log = (folder / 'log.txt').read_text()
    assert 'max_train_files=12: training on a random subset, 12 files of' in log
    assert 'Vox1-E: left out (trials_vox1_e=off)' in log and 'Vox1-H: left out (trials_vox1_h=off)' in log


@pytest.mark.parametrize(
    'method, layerdrop, expected',
    [('oskdft', 0.0, False), ('ft', 0.0, False), ('kd_ft', 0.0, True), ('oskdft', 0.1, True)],
)
def test_ddp_looks_for_parameters_without_gradients_only_where_a_step_leaves_some_out(method, layerdrop, expected):
    from trainer.methods import kd_ft_stages
    from trainer.parts import some_steps_leave_parameters_out

    teacher = load_teacher('tiny', dict(TINY, layerdrop=layerdrop))
    args = dict(ARGS, method=method, kd_epochs=2)
    stages = METHODS[method].stages(args)
    assert some_steps_leave_parameters_out(build_model(args, teacher, num_classes=5), stages) is expected
    if method == 'kd_ft':  # kd_epochs=0: no KD-only epoch
        assert not some_steps_leave_parameters_out(build_model(args, teacher, 5), kd_ft_stages(dict(args, kd_epochs=0)))


def test_frozen_keeps_every_teacher_weight_and_trains_only_the_back_end_without_dropout():
    """method frozen (the demo table's teacher row): the SSL model is the whole teacher, unchanged by
    a step, out of the optimizer, and in eval mode while the rest trains (its dropout and masking off:
    two forwards of the same wave agree); the back-end and head train."""
    before, model, losses = one_step('frozen')
    torch.manual_seed(0)  # the teacher one_step built
    teacher = load_teacher('tiny', TINY)
    assert len(model.student.ssl.encoder.layers) == TINY['num_hidden_layers'] and not model.student.adapters()
    assert not changed(before, model, 'student')[0]
    for name, tensor in teacher.state_dict().items():
        assert torch.equal(model.student.ssl.state_dict()[name], tensor), name
    assert changed(before, model, 'backend')[0] and changed(before, model, 'head')[0]
    assert losses['sv'] > 0 and losses['kd'] == 0
    assert [group['name'] for group in build_optimizer(model).param_groups] == ['backend']
    model.train()
    assert model.backend.training and not model.student.ssl.training
