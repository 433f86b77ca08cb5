"""mode=embed: the rows evaluation scores with, for a folder or a list of files; a run resumed after an
interruption embeds only what is missing; a file that cannot be read is listed, not fatal.

Tolerance: scores.txt keeps 8 decimals, and the same utterance embedded in another batch differs by
about 1e-7; a row without its segments or its normalisation moves a score by 1e-3 or more."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

import inference.embed
import main
from tests.inference.common import read_scores, run_mode, user_error
from utils.checkpoint import load_checkpoint, write_checkpoint

TOLERANCE = 1e-5


def vox1_o_files(trained_run):
    """The utterances of the Vox1-O trials, in order of first appearance (not sorted)."""
    return list(dict.fromkeys(key for _, enroll, test, _ in read_scores(trained_run) for key in (enroll, test)))


def read_out(out):
    """(keys, matrix (N, 2E)) of an out folder."""
    return (out / 'keys.txt').read_text().splitlines(), np.load(out / 'embeddings.npy')


def assert_reproduces_vox1_o(trained_run, keys, matrix):
    rows = dict(zip(keys, matrix))
    for _, enroll, test, score in read_scores(trained_run):
        assert 0.5 * float(rows[enroll] @ rows[test]) == pytest.approx(score, abs=TOLERANCE), (enroll, test)


def embed(trained_run, wav_list, out, checkpoint=None):
    """main's arguments of mode=embed (path_log aside)."""
    return ['mode=embed', f'checkpoint={checkpoint or trained_run / "best.pt"}', f'wav_list={wav_list}', f'out={out}']


@pytest.fixture(scope='module')
def listed(trained_run, corpus, tmp_path_factory):
    """One uninterrupted run over a list of the Vox1-O files, named relative to the current folder
    (path_test), with a blank line and a repeat: (the list, its files in order, out, results)."""
    root = tmp_path_factory.mktemp('listed')
    order = vox1_o_files(trained_run)
    assert order != sorted(order)
    wav_list = root / 'files.txt'
    wav_list.write_text('\n'.join(order[:2] + [''] + order[2:] + [order[0]]) + '\n')
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(corpus['path_test'])
        _, results = run_mode(root, *embed(trained_run, wav_list, root / 'out'))
    return wav_list, order, root / 'out', results


def test_a_folder_is_embedded_as_evaluation_embedded_its_files(trained_run, corpus, tmp_path):
    _, results = run_mode(tmp_path, *embed(trained_run, corpus['path_test'], tmp_path / 'out'))
    keys, matrix = read_out(tmp_path / 'out')
    files = sorted(str(path.relative_to(corpus['path_test'])) for path in Path(corpus['path_test']).rglob('*.wav'))
    assert keys == files and len(files) == 24  # 16 test utterances and 8 of the validation speakers
    assert matrix.dtype == np.float32 and matrix.shape == (24, 64)
    np.testing.assert_allclose(np.linalg.norm(matrix[:, :32], axis=1), 1.0, atol=1e-6)  # unit full embeddings
    assert np.all(np.linalg.norm(matrix[:, 32:], axis=1) < 1.0)  # means of unit segment embeddings
    assert_reproduces_vox1_o(trained_run, keys, matrix)
    identity = json.loads((tmp_path / 'out' / 'embed.json').read_text())
    assert identity['checkpoint'] == str(trained_run / 'best.pt')
    assert identity['epoch'] == load_checkpoint(trained_run / 'best.pt')['epoch']
    assert (identity['num_test_frames'], identity['num_seg'], identity['embedding_size']) == (100, 5, 32)
    assert (tmp_path / 'out' / 'bad_files.txt').read_text() == '' and not (tmp_path / 'out' / 'parts').exists()
    assert results == {'out': str(tmp_path / 'out'), 'embedded': 24, 'bad': 0, 'embedded_now': 24}


def test_a_list_is_embedded_in_its_own_order(listed, trained_run):
    _, order, out, results = listed
    keys, matrix = read_out(out)
    assert keys == order and len(order) == 8  # blank line and repeat skipped
    assert_reproduces_vox1_o(trained_run, keys, matrix)
    assert results['embedded'] == results['embedded_now'] == 8 and (out / 'embed.json').is_file()


def test_an_interrupted_run_resumes_with_the_missing_files_alone(listed, trained_run, corpus, tmp_path, monkeypatch):
    wav_list, order, uninterrupted, _ = listed
    monkeypatch.chdir(corpus['path_test'])
    monkeypatch.setattr(inference.embed, 'PART_UTTERANCES', 3)
    original, parts = inference.embed.embed_part, []

    def interrupted_at_the_second_part(model, root, keys, *rest):
        parts.append(list(keys))
        if len(parts) == 2:
            raise KeyboardInterrupt
        return original(model, root, keys, *rest)

    monkeypatch.setattr(inference.embed, 'embed_part', interrupted_at_the_second_part)
    out = tmp_path / 'out'
    with pytest.raises(KeyboardInterrupt):
        main.main([*embed(trained_run, wav_list, out), f'path_log={tmp_path}'])
    (saved,) = (out / 'parts').iterdir()
    assert np.load(saved)['keys'].tolist() == order[:3] and not (out / 'embeddings.npy').exists()

    def counted(model, root, keys, *rest):
        parts.append(list(keys))
        return original(model, root, keys, *rest)

    parts.clear()
    monkeypatch.setattr(inference.embed, 'embed_part', counted)
    _, results = run_mode(tmp_path, *embed(trained_run, wav_list, out))
    assert parts == [order[3:6], order[6:8]]
    assert (results['embedded'], results['embedded_now']) == (8, 5)
    keys, matrix = read_out(out)
    expected_keys, expected = read_out(uninterrupted)
    assert keys == expected_keys == order
    np.testing.assert_allclose(matrix, expected, rtol=0, atol=1e-6)
    assert not (out / 'parts').exists()


def test_an_out_folder_of_another_model_or_recipe_is_refused(listed, trained_run, tmp_path):
    out = tmp_path / 'out'
    shutil.copytree(listed[2], out)
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    state = load_checkpoint(trained_run / 'best.pt')
    name = next(name for name in state['model'] if name.endswith('.weight'))
    other = dict(state, model={**state['model'], name: state['model'][name] + 0.01})
    write_checkpoint(str(tmp_path / 'other.pt'), other)
    argv = embed(trained_run, listed[0], out, tmp_path / 'other.pt') + [f'path_log={tmp_path}']
    refused = f'out={str(out)!r} holds embeddings of another model or recipe ({{}} differ); give a new out folder'
    assert user_error(*argv) == refused.format('weights')
    argv = embed(trained_run, listed[0], out) + ['num_test_frames=50', f'path_log={tmp_path}']
    assert user_error(*argv) == refused.format('num_test_frames')
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def write_copy(source, target, rate):
    """source (16 kHz) resampled to rate, as float samples."""
    wave, _ = sf.read(source, dtype='float32')
    sf.write(target, resample_poly(wave, rate, 16_000).astype(np.float32), rate, subtype='FLOAT')


def test_files_that_cannot_be_read_are_listed_and_the_others_embedded(
    listed, trained_run, corpus, tmp_path, monkeypatch
):
    """An empty file, noise named .wav, a missing file, one too short, a FLAC whose header reads and
    whose samples do not decode (its batch fails, then each file is embedded alone to name it); and
    three that embed: a test utterance (as the list's run embedded it) and an 8 kHz copy (as its 16 kHz
    reference, resampled here with scipy's resample_poly)."""
    monkeypatch.chdir(tmp_path)
    _, key, test, _ = read_scores(trained_run)[0]
    enroll, test = Path(corpus['path_test']) / key, Path(corpus['path_test']) / test
    (tmp_path / 'empty.wav').write_bytes(b'')
    (tmp_path / 'noise.wav').write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)))
    sf.write(tmp_path / 'short.wav', np.full(500, 0.1, np.float32), 16_000)
    wave, _ = sf.read(enroll, dtype='float32')
    sf.write(tmp_path / 'broken.flac', wave, 16_000)
    data = bytearray((tmp_path / 'broken.flac').read_bytes())
    data[len(data) // 4 : len(data) // 4 + 4000] = bytes(4000)
    (tmp_path / 'broken.flac').write_bytes(bytes(data))
    write_copy(test, tmp_path / 'test_8k.wav', 8_000)
    reference = resample_poly(sf.read(tmp_path / 'test_8k.wav', dtype='float32')[0], 2, 1)
    sf.write(tmp_path / 'test_ref.wav', reference.astype(np.float32), 16_000, subtype='FLOAT')
    files = ['empty.wav', str(enroll), 'noise.wav', 'missing.wav', 'broken.flac', 'short.wav']
    files += ['test_8k.wav', 'test_ref.wav']
    (tmp_path / 'files.txt').write_text('\n'.join(files) + '\n')

    folder, results = run_mode(tmp_path, *embed(trained_run, 'files.txt', tmp_path / 'out'))
    keys, matrix = read_out(tmp_path / 'out')
    assert keys == [str(enroll), 'test_8k.wav', 'test_ref.wav']
    listed_keys, listed_rows = read_out(listed[2])
    np.testing.assert_allclose(matrix[0], listed_rows[listed_keys.index(key)], rtol=0, atol=1e-6)
    np.testing.assert_allclose(matrix[1], matrix[2], rtol=0, atol=1e-6)
    bad = dict(line.split('\t') for line in (tmp_path / 'out' / 'bad_files.txt').read_text().splitlines())
    assert list(bad) == ['empty.wav', 'noise.wav', 'missing.wav', 'short.wav', 'broken.flac']
    assert bad['empty.wav'].startswith(f'cannot read audio file {tmp_path / "empty.wav"}: ')
    assert bad['noise.wav'].startswith(f'cannot read audio file {tmp_path / "noise.wav"}: ')
    assert bad['missing.wav'] == f'audio file not found: {tmp_path / "missing.wav"}'
    assert bad['short.wav'] == 'short.wav is shorter than 720 samples at 16 kHz, too short to embed'
    assert bad['broken.flac'].startswith(f'cannot decode audio file {tmp_path / "broken.flac"}: ')
    assert (results['embedded'], results['bad']) == (3, 5)
    log = (folder / 'log.txt').read_text()
    assert log.count('wav_list: 1 file at 8000 Hz is resampled to 16 kHz') == 1
    assert log.count('wav_list: 5 files could not be embedded, listed in bad_files.txt: empty.wav (') == 1


def test_a_list_of_bad_files_alone_is_a_user_error(trained_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'empty.wav').write_bytes(b'')
    (tmp_path / 'files.txt').write_text('empty.wav\nmissing.wav\n')
    out = tmp_path / 'out'
    assert user_error(*embed(trained_run, 'files.txt', out), f'path_log={tmp_path}') == (
        f"wav_list='files.txt': none of its 2 files could be embedded; {out / 'bad_files.txt'} says why for each"
    )
    bad = (out / 'bad_files.txt').read_text().splitlines()
    assert bad[1] == f'missing.wav\taudio file not found: {tmp_path / "missing.wav"}' and len(bad) == 2


@pytest.mark.parametrize(
    'wav_list, line',
    [
        (
            'nowhere',
            ': no such file or folder (give a list of audio files, one a line, or a folder of .wav / .flac files)',
        ),
        ('folder', ' names no audio file'),
    ],
    ids=['no such path', 'a folder without audio'],
)
def test_a_wav_list_that_names_no_file_is_a_user_error(trained_run, tmp_path, wav_list, line):
    (tmp_path / 'folder').mkdir()
    (tmp_path / 'folder' / 'notes.txt').write_text('no audio here\n')
    path = tmp_path / wav_list
    message = user_error(*embed(trained_run, path, tmp_path / 'out'), f'path_log={tmp_path}')
    assert message == f'wav_list={str(path)!r}{line}'
    assert not (tmp_path / 'OS-KDFT').exists() and not (tmp_path / 'out').exists()  # refused before writing


def test_the_check_before_the_run_reads_a_folder_only_to_its_first_audio_file(tmp_path, monkeypatch):
    """main checks wav_list before a run folder is made; a folder of a million files is then walked
    once in all, by the embedding itself."""

    def walk(folder):
        yield str(tmp_path), [], ['notes.txt', 'a.wav']
        raise AssertionError('the whole folder was walked')

    monkeypatch.setattr(inference.embed.os, 'walk', walk)
    inference.embed.check_inputs(str(tmp_path))
    with pytest.raises(AssertionError, match='the whole folder was walked'):
        inference.embed.list_inputs(str(tmp_path))
