"""benchmarks/list_spread.py on a list whose subsets' EERs are known: three speakers, each pair of
them holding one non-target above its targets but (a, c), so that a subset of two reads 100 % for
{a, b} and {b, c} and 0 % for {a, c}, and the whole list 66.67 % (both high non-targets pass
wherever a target does)."""

import importlib.util
import os

import pytest

from tests.conftest import ROOT


def load():
    spec = importlib.util.spec_from_file_location('list_spread', os.path.join(ROOT, 'benchmarks', 'list_spread.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_list(folder):
    lines = [f'1 {s}/v1/1.wav {s}/v2/1.wav 1.0' for s in 'abc']
    lines += ['0 a/v1/1.wav b/v1/1.wav 2.0', '0 b/v1/1.wav c/v1/1.wav 2.0', '0 a/v1/1.wav c/v1/1.wav -1.0']
    os.makedirs(folder / 'scores')
    (folder / 'scores' / 'Vox1-E.txt').write_text('\n'.join(lines) + '\n')


def test_prints_the_lists_eer_and_its_subsets_spread(tmp_path, capsys):
    write_list(tmp_path)
    load().main([str(tmp_path), '--speakers', '2', '3', '--draws', '300'])
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith('Vox1-E.txt: 6 trials, EER 66.67 %')
    # two of the three pairs read 100 %: the median and the 95th percentile are 100, the 5th 0
    assert out[1] == (
        'subsets of 2 of its 3 speakers (300 draws with both kinds of trial): EER median 100.00 %, 5-95 % 0.00-100.00 %'
    )
    assert out[2].endswith('EER median 66.67 %, 5-95 % 66.67-66.67 %')


def test_a_folder_without_the_lists_scores_is_named(tmp_path):
    with pytest.raises(SystemExit, match=r'no scores file .*scores/Vox1-H.txt: give a run folder'):
        load().main([str(tmp_path), '--list', 'Vox1-H'])


def test_a_subset_larger_than_the_list_is_named(tmp_path):
    write_list(tmp_path)
    with pytest.raises(SystemExit, match='--speakers 4: a subset of 4 speakers: expected 2 to 3'):
        load().main([str(tmp_path), '--speakers', '4'])
