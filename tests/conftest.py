"""What several test modules share: a very small demo corpus, the command line of a fast run and run
folders trained with it."""

import os
import subprocess
import sys

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

RUN = [*FAST, 'epoch=3', 'name=run']
SHORT_RUN = ('kd_epochs=1', 'epoch=1')  # one epoch, after kd_ft's one KD epoch
TWO_PROCESSES = (sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2')


def command(corpus, path_log, *extra, launcher=(sys.executable,)):
    """main.py on the small corpus at FAST sizes, 3 epochs unless `extra` says otherwise."""
    paths = [f'{key}={value}' for key, value in corpus.items()]
    return [*launcher, 'main.py', *paths, *RUN, f'path_log={path_log}', *extra]


def run_main(*args, timeout=300):
    done = subprocess.run(list(args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def run_folder(path_log):
    (folder,) = (path_log / 'OS-KDFT').iterdir()
    return folder


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


@pytest.fixture(scope='session')
def two_process_run(corpus, tmp_path_factory):
    """The run folder of a method trained (SHORT_RUN) as one torchrun job of two processes on this
    machine (gloo); each method runs once a session, for every test that looks at it or compares
    with it."""
    folders = {}

    def folder_of(method):
        if method not in folders:
            path_log = tmp_path_factory.mktemp(f'two-processes-{method}')
            run_main(*command(corpus, path_log, f'method={method}', *SHORT_RUN, launcher=TWO_PROCESSES))
            folders[method] = run_folder(path_log)
        return folders[method]

    return folder_of
