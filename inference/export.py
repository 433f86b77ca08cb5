"""mode=export: the trained system as files that run without this code base.

    out/model.pt     TorchScript (torch.jit.load), traced
    out/model.onnx   ONNX (torch.onnx's torch.export-based exporter), batch and length axes dynamic
    out/model.json   the input contract: rate, channels, shapes, the scoring recipe, the threshold

Both take a raw 16 kHz mono waveform (B, L) float32 and give the embedding (B, E): the graph of
models.speaker_net.embed_waves, which SpeakerNet.embed runs (the SV path, adapters on every row,
with the wave normalisation inside when the run used it). After writing, both files are run on
probe waves and compared with the eager model (what evaluation runs); a difference above TOLERANCE
stops the export.
"""

import contextlib
import json
import logging
import os
import warnings

import torch
import torch.nn as nn

from data.audio import FRAME_SAMPLES, SAMPLE_RATE
from inference.model import MIN_SAMPLES, checkpoint_threshold, load_model
from models.speaker_net import embed_waves
from utils.checkpoint import write_atomic

FILES = {'torchscript': 'model.pt', 'onnx': 'model.onnx', 'contract': 'model.json'}
INPUT_NAME, OUTPUT_NAME = 'wave', 'embedding'
# largest |exported - eager| accepted on embeddings (ECAPA's batch-normed output, entries of order 0.1 to 1); float32
# kernels that sum in another order differ by about 1e-7 to 1e-6 there
TOLERANCE = 1e-4
# the probes of the check: (batch, seconds); odd lengths, the 3 s evaluation segments, a long utterance
PROBES = ((2, 1.37), (5, 3.0), (1, 9.71))
MAX_ONNX_FILE = 2**31 - 2**26  # protobuf's 2 GiB limit, with room: larger models keep weights beside the file


class Embedder(nn.Module):
    """The deployed system: wave (B, L) float32 at 16 kHz -> embedding (B, E), SpeakerNet.embed
    without the training head. Rows of a batch must have the same length (zero padding would change
    the embedding). Shares the model's student and back-end, and puts them in eval mode."""

    def __init__(self, model):
        super().__init__()
        self.student = model.student
        self.backend = model.backend
        self.normalize_wave = model.normalize_wave
        self.eval()

    def forward(self, wave):
        return embed_waves(self.student, self.backend, wave, normalize_wave=self.normalize_wave)


@contextlib.contextmanager
def quiet_exporters():
    """torch.jit and torch.onnx warn about what does not apply here (Python values traced as
    constants that are constants, torchvision ops not installed): the check below is what counts."""
    onnx_logger = logging.getLogger('torch.onnx')
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            yield
    finally:
        onnx_logger.setLevel(level)


def example_wave(batch=2, seconds=3.0, seed=0):
    """Random noise (batch, seconds x 16 kHz) float32: what the exporters trace and the checks run."""
    generator = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, round(seconds * SAMPLE_RATE), generator=generator)


@torch.no_grad()
def export_torchscript(embedder, path):
    """Traces the embedder (a batch of 2 x 3 s) into path. The trace records sizes as operations, so
    other batch sizes and lengths run the same graph (the check below runs them)."""
    with quiet_exporters():
        traced = torch.jit.trace(embedder, example_wave(), check_trace=False)
    write_atomic(path, lambda file: torch.jit.save(traced, file))


def export_onnx(embedder, path):
    """Exports the embedder with torch.onnx's torch.export-based exporter (the default since torch
    2.9; the older TorchScript-based one works here too, and is deprecated), batch and length
    dynamic. Weights over 2 GiB go into path + '.data' beside it."""
    dims = {0: torch.export.Dim('batch', min=1), 1: torch.export.Dim('samples', min=MIN_SAMPLES)}  # (B, L)
    size = sum(p.numel() * p.element_size() for p in embedder.parameters())
    with quiet_exporters():
        program = torch.onnx.export(
            embedder,
            (example_wave(),),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={'wave': dims},
            dynamo=True,
            verbose=False,
        )
    program.save(path, external_data=size > MAX_ONNX_FILE)


def onnx_session(path, threads=None):
    """An onnxruntime session on the CPU (threads None: onnxruntime's own choice)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])


@torch.no_grad()
def check_exported(model, torchscript_path, onnx_path):
    """The largest |exported - eager| of each file over the PROBES, the eager model being
    model.embed (what evaluation runs): {'torchscript': x, 'onnx': y}."""
    traced = torch.jit.load(torchscript_path)
    session = onnx_session(onnx_path)
    worst = {'torchscript': 0.0, 'onnx': 0.0}
    for seed, (batch, seconds) in enumerate(PROBES):
        wave = example_wave(batch, seconds, seed + 1)
        eager = model.embed(wave)  # (B, E)
        onnx_output = session.run(None, {INPUT_NAME: wave.numpy()})[0]  # (B, E) numpy
        outputs = {'torchscript': traced(wave), 'onnx': torch.from_numpy(onnx_output)}
        for name, output in outputs.items():
            worst[name] = max(worst[name], float((output - eager).abs().max()))
    return worst


def contract(args, state, model, threshold, where, differences):
    """model.json: what a user of the exported files needs to feed them and score their output as
    this project does."""
    segment = args['num_test_frames'] * FRAME_SAMPLES
    ssl = model.student.ssl.config
    return {
        'files': {name: FILES[name] for name in ('torchscript', 'onnx')},
        'input': {
            'name': INPUT_NAME,
            'shape': ['batch', 'samples'],
            'dtype': 'float32',
            'sample_rate': SAMPLE_RATE,
            'channels': 'mono: average the channels of a multi-channel file',
            'values': 'samples in [-1, 1] as a float32 read gives them (soundfile), no normalisation needed'
            + (' (the model normalises each wave itself, normalize_wave=true)' if model.normalize_wave else ''),
            'min_samples': MIN_SAMPLES,
            'batch': 'every row the same length; zero padding changes the embedding, so embed utterances '
            'of different lengths apart (or group them by length)',
        },
        'output': {'name': OUTPUT_NAME, 'shape': ['batch', args['embedding_size']], 'dtype': 'float32'},
        'scoring': {
            'embeddings': 'f = unit(embedding of the whole utterance); s = mean of unit(embedding of each segment)',
            'segments': {
                'count': args['num_seg'],
                'samples': segment,
                'starts': f'numpy.linspace(0, L - {segment}, {args["num_seg"]}).round()',
                'short': f'an utterance under {segment} samples is first repeated from its start '
                f'(wrap-padded) to {segment}',
            },
            'score': '0.5 * (dot(f_a, f_b) + dot(s_a, s_b))',
        },
        'threshold': None
        if threshold is None
        else {'value': threshold, 'source': where, 'rule': 'accept (same speaker) when score >= value'},
        'model': {
            'checkpoint': os.path.abspath(args['checkpoint']),
            'epoch': state['epoch'],
            'method': args['method'],
            'ssl_type': ssl.model_type,
            'ssl_layers': ssl.num_hidden_layers,
            'ssl_hidden_size': ssl.hidden_size,
            'adapters': bool(model.student.adapters()),
        },
        'check': {
            'tolerance': TOLERANCE,
            'max_abs_difference': differences,
            'probes': [[batch, round(seconds * SAMPLE_RATE)] for batch, seconds in PROBES],
        },
    }


def export_checkpoint(args, logger, device, state):
    """Writes the three files into out (None: the run folder's export/) and checks them."""
    model, params = load_model(state, args, logger, torch.device('cpu'))  # exported graphs are made on the CPU
    out = args['out'] or os.path.join(logger.run_dir, 'export')
    os.makedirs(out, exist_ok=True)
    paths = {name: os.path.join(out, file) for name, file in FILES.items()}
    embedder = Embedder(model)
    export_torchscript(embedder, paths['torchscript'])
    logger.log_text(f'export: TorchScript written to {paths["torchscript"]}')
    export_onnx(embedder, paths['onnx'])
    logger.log_text(f'export: ONNX written to {paths["onnx"]}')
    differences = check_exported(model, paths['torchscript'], paths['onnx'])
    logger.log_text(
        f'export: largest difference from the eager model on {len(PROBES)} probe batches: TorchScript '
        f'{differences["torchscript"]:.1e}, ONNX (onnxruntime) {differences["onnx"]:.1e} (tolerance '
        f'{TOLERANCE:.0e})'
    )
    if max(differences.values()) > TOLERANCE:
        raise RuntimeError(
            f'export: an exported model differs from the eager one by more than {TOLERANCE:.0e}: {differences}'
        )
    threshold, where = checkpoint_threshold(state)
    description = contract(args, state, model, threshold, where, differences)
    write_atomic(paths['contract'], lambda file: json.dump(description, file, indent=2), mode='w')
    logger.log_text(
        f'export: input contract written to {paths["contract"]}; '
        + (f'threshold {threshold:.4f} ({where})' if threshold is not None else f'no threshold: {where}')
    )
    summary = {'export': paths, 'max_abs_difference': differences, 'threshold': threshold, 'params': params}
    logger.save_results(summary)
    return summary
