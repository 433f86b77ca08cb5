"""Two machines, played by two torchrun agents on this one (c10d rendezvous, gloo on CPU): the job
trains bit for bit the weights of the same two processes on one machine and writes one run
folder; stopped by SIGTERM on every machine, it continues on one machine to those weights again."""

import os
import signal
import subprocess
import sys
import time

import torch

from tests.conftest import ROOT, SHORT_RUN, TWO_PROCESSES, command, run_folder, run_main
from tests.test_resume import assert_same_run, load, metric_values
from utils.distributed import free_port

METHOD = 'ft'  # the shared two-process reference of that method (its 6 steps train every layer)
ONE_THREAD = {**os.environ, 'OMP_NUM_THREADS': '1'}  # as torchrun sets it for 2 processes on one machine


def torchrun_on_machine(node_rank, port):
    return (
        sys.executable,
        '-m',
        'torch.distributed.run',
        '--nnodes=2',
        f'--node_rank={node_rank}',
        '--nproc_per_node=1',
        '--rdzv_backend=c10d',
        f'--rdzv_endpoint=127.0.0.1:{port}',
        f'--rdzv_id=two-machines-{port}',
    )


def start_two_machines(corpus, path_log, *extra):
    """One torchrun agent per machine, each the leader of its own process group (as srun starts them)."""
    port = free_port()
    return [
        subprocess.Popen(
            command(corpus, path_log, f'method={METHOD}', *SHORT_RUN, *extra, launcher=torchrun_on_machine(node, port)),
            cwd=ROOT,
            env=ONE_THREAD,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for node in (0, 1)
    ]


def finish(agents, timeout=300):
    """Every agent's exit status, and the ends of their error output."""
    errors = [agent.communicate(timeout=timeout)[1][-3000:] for agent in agents]
    return [agent.returncode for agent in agents], '\n'.join(errors)


def test_two_machines_train_bit_for_bit_the_weights_of_two_processes_on_one(corpus, two_process_run, tmp_path):
    one_machine = two_process_run(METHOD)
    codes, errors = finish(start_two_machines(corpus, tmp_path))
    assert codes == [0, 0], errors
    folder = run_folder(tmp_path)  # one run folder: the job's rank 0 writes, not each machine's first process
    log = (folder / 'log.txt').read_text()
    assert 'device cpu x 2 process(es) on 2 machine(s)' in log and 'batch 4 = 2 x 2' in log
    assert 'device cpu x 2 process(es) on 1 machine(s)' in (one_machine / 'log.txt').read_text()
    got, expected = load(folder / 'last.pt'), load(one_machine / 'last.pt')
    assert (got['epoch'], got['world_size']) == (expected['epoch'], expected['world_size']) == (1, 2)
    assert got['model'].keys() == expected['model'].keys()
    for name, tensor in expected['model'].items():
        assert torch.equal(got['model'][name], tensor), name
    assert metric_values(folder) == metric_values(one_machine)


def test_two_machines_stopped_by_sigterm_continue_on_one_machine_to_the_same_weights(corpus, two_process_run, tmp_path):
    one_machine = two_process_run(METHOD)
    agents = start_two_machines(corpus, tmp_path, 'checkpoint_minutes=0')
    deadline = time.monotonic() + 240
    while not any('epoch 0 done, 2 steps of the next' in log.read_text() for log in tmp_path.glob('OS-KDFT/*/log.txt')):
        assert all(agent.poll() is None for agent in agents) and time.monotonic() < deadline, finish(agents)[1]
        time.sleep(0.02)
    for agent in agents:  # every machine gets the signal, as a cluster's scheduler sends it
        os.killpg(agent.pid, signal.SIGTERM)
    finish(agents)  # torchrun reports the signal with its own status; its workers saved and exited
    folder = run_folder(tmp_path)
    saved = load(folder / 'last.pt')
    assert (saved['epoch'], saved['world_size'], len(saved['rng'])) == (0, 2, 2) and saved['step'] >= 2
    assert (
        'Continue with: torchrun --nnodes=2 --nproc_per_node=1 --rdzv_backend=c10d --rdzv_endpoint=HOST:PORT '
        f'main.py resume={folder / "last.pt"} (on each of the 2 machines)'
    ) in (folder / 'log.txt').read_text()
    run_main(*TWO_PROCESSES, 'main.py', f'path_log={tmp_path}', 'name=run', 'resume=auto')
    assert run_folder(tmp_path) == folder  # continued in its own folder
    assert_same_run(folder, one_machine)
