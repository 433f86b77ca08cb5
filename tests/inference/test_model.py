"""Self-contained checkpoints: what a run's best.pt carries, and the model rebuilt from it alone
(or, for a checkpoint written before, through the teacher)."""

import json

import pytest
import torch

import inference.model
from arguments import get_args
from inference.model import checkpoint_threshold, load_model
from models.ssl import load_teacher
from tests.inference.common import score_arrays
from tests.utils.test_metrics import brute_force_eer_threshold
from utils.checkpoint import load_checkpoint


class Notes:
    """A logger that keeps the lines."""

    def __init__(self):
        self.lines = []

    def log_text(self, text):
        self.lines.append(text)


def rebuilt(state):
    notes = Notes()
    model, params = load_model(state, get_args()[0], notes, torch.device('cpu'))
    return model, params, notes.lines


def test_best_pt_carries_the_student_config_the_sizes_and_the_vox1_o_threshold(trained_run):
    state = load_checkpoint(trained_run / 'best.pt')
    results = json.loads((trained_run / 'results.json').read_text())
    config = state['ssl_config']
    assert (config['model_type'], config['num_hidden_layers'], config['hidden_size']) == ('wav2vec2', 2, 128)
    assert state['params'] == results['params']
    scores, labels = score_arrays(trained_run)
    assert state['best']['epoch'] == results['best_epoch'] == state['epoch']
    assert state['best']['threshold'] == pytest.approx(brute_force_eer_threshold(scores, labels), abs=1e-8)
    assert results['Vox1-O']['eer_threshold'] == pytest.approx(state['best']['threshold'], abs=1e-12)
    threshold, where = checkpoint_threshold(state)
    assert threshold == state['best']['threshold']
    assert where == f'EER point of Vox1-O at epoch {state["epoch"]}, EER {results["Vox1-O"]["eer"]:.2f} %'


def test_a_last_pt_of_a_later_epoch_offers_no_threshold(trained_run):
    state = load_checkpoint(trained_run / 'best.pt')
    later = dict(state, epoch=state['epoch'] + 1)
    assert checkpoint_threshold(later) == (
        None,
        f'the checkpoint holds the weights of epoch {state["epoch"] + 1}, '
        f'its Vox1-O threshold is that of the best epoch {state["epoch"]}: '
        f"use the run's best.pt",
    )


def test_a_checkpoint_written_before_rebuilds_through_the_teacher_with_a_notice(trained_run, monkeypatch):
    monkeypatch.setattr(inference.model, 'load_teacher', load_teacher)
    state = load_checkpoint(trained_run / 'best.pt')
    old = {key: value for key, value in state.items() if key not in ('ssl_config', 'params')}
    old['best'] = {key: value for key, value in state['best'].items() if key != 'threshold'}
    model, params, notes = rebuilt(old)
    assert len(notes) == 1 and notes[0].startswith(
        "checkpoint: written before checkpoints carried the student's "
        'SSL config; the student is rebuilt through its teacher '
        "model_name_or_path='tiny'"
    )
    assert params == state['params']
    reference, _, quiet = rebuilt(state)
    assert quiet == []
    wave = torch.randn(2, 24000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.embed(wave), reference.embed(wave))
    assert checkpoint_threshold(old)[0] is None
