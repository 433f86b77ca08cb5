"""mode=export: TorchScript and ONNX files that compute what the eager model computes (adapters on
every row), with the JSON contract beside them.

Tolerance: TOLERANCE (1e-4) on embeddings whose entries are of order 0.1 to 1; onnxruntime sums in
another order than torch and differs by about 1e-7 to 1e-6, TorchScript runs torch's own kernels."""

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import soundfile as sf
import torch

from arguments import get_args
from inference.export import MIN_SAMPLES, TOLERANCE, Embedder
from inference.model import load_model
from models.ssl import normalize_waves
from tests.inference.common import checkpoints_not_ours, run_mode, user_error
from tests.inference.test_model import Notes
from utils.checkpoint import load_checkpoint, write_checkpoint


def with_strong_adapters(state):
    """The checkpoint with adapters that change the embedding clearly (trained two epochs, theirs
    add 1e-4 to 1e-3): an export without them would differ far beyond the tolerance."""
    generator = torch.Generator().manual_seed(3)
    model = dict(state['model'])
    for name, tensor in model.items():
        if '.adapter.up.weight' in name:
            model[name] = torch.randn(tensor.shape, generator=generator)
    return dict(state, model=model)


@pytest.fixture(scope='module')
def exported(trained_run, tmp_path_factory):
    """(the export's run folder, its results, the out folder, the eager SpeakerNet)."""
    root = tmp_path_factory.mktemp('export')
    state = with_strong_adapters(load_checkpoint(trained_run / 'best.pt'))
    write_checkpoint(str(root / 'best.pt'), state)
    folder, results = run_mode(root, 'mode=export', f'checkpoint={root / "best.pt"}', f'out={root / "out"}')
    model, _ = load_model(state, get_args()[0], Notes(), torch.device('cpu'))
    return folder, results, root / 'out', model


@pytest.fixture(scope='module')
def runtimes(exported):
    """name -> function (B, L) tensor -> (B, E) tensor, for each exported file."""
    out = exported[2]
    traced = torch.jit.load(str(out / 'model.pt'))
    session = onnxruntime.InferenceSession(str(out / 'model.onnx'), providers=['CPUExecutionProvider'])
    return {
        'torchscript': lambda wave: traced(wave),
        'onnx': lambda wave: torch.from_numpy(session.run(['embedding'], {'wave': wave.numpy()})[0]),
    }


def test_export_writes_the_files_and_the_contract(exported, trained_run):
    folder, results, out, model = exported
    contract = json.loads((out / 'model.json').read_text())
    state = load_checkpoint(trained_run / 'best.pt')
    assert contract['files'] == {'torchscript': 'model.pt', 'onnx': 'model.onnx'}
    assert contract['input']['sample_rate'] == 16000 and contract['input']['shape'] == ['batch', 'samples']
    assert contract['input']['min_samples'] == MIN_SAMPLES
    assert contract['output'] == {'name': 'embedding', 'shape': ['batch', 32], 'dtype': 'float32'}
    assert contract['scoring']['segments']['count'] == 5 and contract['scoring']['segments']['samples'] == 16000
    assert contract['threshold']['value'] == state['best']['threshold'] == results['threshold']
    assert (contract['model']['ssl_layers'], contract['model']['adapters']) == (2, True)
    differences = contract['check']['max_abs_difference']
    assert 0 <= differences['onnx'] <= TOLERANCE and 0 <= differences['torchscript'] <= TOLERANCE
    assert results['max_abs_difference'] == differences
    log = (folder / 'log.txt').read_text()
    assert 'export: largest difference from the eager model on 3 probe batches' in log


@pytest.mark.parametrize('batch, samples', [(1, MIN_SAMPLES), (3, 17_777), (5, 48_000), (1, 160_000)])
def test_exported_models_equal_the_eager_one_on_random_waves(exported, runtimes, batch, samples):
    model = exported[3]
    wave = 0.1 * torch.randn(batch, samples, generator=torch.Generator().manual_seed(samples))
    with torch.no_grad():
        eager = model.embed(wave)  # (B, E)
        without_adapters = model.backend(model.student(wave, adapters=False))
        assert (eager - without_adapters).abs().max() > 100 * TOLERANCE  # the adapters matter here
        for name, run in runtimes.items():
            torch.testing.assert_close(run(wave), eager, rtol=0, atol=TOLERANCE, msg=name)


def test_exported_models_equal_the_eager_one_on_a_real_utterance_and_its_segments(exported, runtimes, corpus):
    """The longest test utterance at its own length, and its evaluation segments as one batch."""
    model = exported[3]
    path = max(sorted(Path(corpus['path_test']).rglob('*.wav')), key=lambda p: sf.info(str(p)).frames)
    wave = torch.from_numpy(sf.read(path, dtype='float32')[0])[None]  # (1, L)
    starts = np.linspace(0, wave.shape[1] - 16_000, 5).round().astype(int)
    segments = torch.stack([wave[0, s : s + 16_000] for s in starts])  # (5, 16000)
    assert wave.shape[1] > 2 * 16_000
    with torch.no_grad():
        for probe in (wave, segments):
            eager = model.embed(probe)
            for name, run in runtimes.items():
                torch.testing.assert_close(run(probe), eager, rtol=0, atol=TOLERANCE, msg=name)


def test_every_row_of_an_exported_batch_takes_the_adapters(exported, runtimes):
    """The graph exported is SpeakerNet.embed's (the same function): equal to it bitwise in eager
    mode, and every row of a batch takes the adapters, as each row alone does."""
    model = exported[3]
    wave = 0.1 * torch.randn(3, 20_000, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        alone = torch.cat([model.embed(row[None]) for row in wave])
        assert torch.equal(Embedder(model)(wave), model.embed(wave))
        without_adapters = model.backend(model.student(wave, adapters=False))
        assert (alone - without_adapters).abs().amax(dim=1).min() > 100 * TOLERANCE
        for name, run in runtimes.items():
            torch.testing.assert_close(run(wave), alone, rtol=0, atol=TOLERANCE, msg=name)


def test_the_embedder_normalises_the_wave_when_the_run_did(exported):
    """As SpeakerNet.embed does; the model is nearly invariant to a wave's scale and offset (the
    CNN's group norm), so the check is exact equality."""
    _, _, _, model = exported
    wave = 0.1 * torch.randn(2, 20_000, generator=torch.Generator().manual_seed(8)) + 0.05
    with torch.no_grad():
        normalised_first = Embedder(model)(normalize_waves(wave))
        assert not torch.equal(Embedder(model)(wave), normalised_first)
        model.normalize_wave = True
        try:
            assert torch.equal(Embedder(model)(wave), normalised_first)
            assert torch.equal(model.embed(wave), normalised_first)
        finally:
            model.normalize_wave = False


@pytest.mark.parametrize('case', ['plain dict', 'text file', 'missing'])
def test_a_checkpoint_that_is_not_a_runs_gives_one_line_naming_it(tmp_path, case):
    checkpoint, line = checkpoints_not_ours(tmp_path)[case]
    out = tmp_path / 'out'
    assert user_error('mode=export', f'checkpoint={checkpoint}', f'out={out}', f'path_log={tmp_path}') == line
    assert not out.exists() and not (tmp_path / 'OS-KDFT').exists()  # refused before anything is written
