"""What several test modules share: a very small demo corpus, the command line of a fast run and a run
folder trained with it."""

import os

import pytest
import soundfile

from data.demo import prepare_demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_DEMO = dict(
    num_train_speakers=6,
    num_test_speakers=4,
    num_vox1_o_speakers=2,
    num_val_speakers=2,
    videos_per_speaker=2,
    utterances_per_video=2,
    num_musan_per_kind=2,
    num_rirs=2,
)
FAST = [
    'model_name_or_path=tiny',
    'num_hidden_layers=2',
    'batch_size=4',
    'ecapa_channels=16',
    'embedding_size=32',
    'num_workers=0',
    'num_test_frames=100',
    'spec_mask_freq=12',
    'device=cpu',
]


@pytest.fixture(scope='session')
def corpus(tmp_path_factory):
    """24 training utterances of 6 speakers, 16 test utterances; every path as key=value for main.py."""
    return prepare_demo(str(tmp_path_factory.mktemp('demo')), **SMALL_DEMO)


@pytest.fixture(scope='session')
def trained_run(corpus, tmp_path_factory):
    """The run folder of a whole 2-epoch run on the small corpus (FAST sizes): results, scores, best.pt."""
    import main  # here: the modules that only need the corpus do not import the whole program

    path_log = tmp_path_factory.mktemp('exp')
    paths = [f'{key}={value}' for key, value in corpus.items()]
    main.main(paths + FAST + ['epoch=2', 'log_interval=2', f'path_log={path_log}', 'name=e2e'])  # 6 steps an epoch
    (folder,) = (path_log / 'OS-KDFT').iterdir()
    return folder


@pytest.fixture
def frames_read(monkeypatch):
    """The `frames` argument of every soundfile read made while the test runs, in order: what
    a reader decodes."""
    requested = []
    original = soundfile.SoundFile.read

    def recording_read(self, frames=-1, *args, **kwargs):
        requested.append(frames)
        return original(self, frames, *args, **kwargs)

    monkeypatch.setattr(soundfile.SoundFile, 'read', recording_read)
    return requested
