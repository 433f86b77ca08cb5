#!/usr/bin/env bash
# The GPU checks, one script under 8 minutes on one NVIDIA H100 or H200:
#   1. the embedded demo on CUDA in bf16 (`main.py device=cuda amp=bf16`, at most 180 s; about 100 s on an H200), timed;
#   2. benchmarks/train_step.py on CUDA at the wav2vec2-large-xlsr-53 shape (random weights, 4-layer
#      student, 16 x 2 s crops): utterances/s, peak GPU memory and MFU of ours (shared front end,
#      bf16, SDPA) and of the original formulation (duplicated batch, fp32, eager attention); its
#      last line, `gpu_train_step: ratio=X.XX`, is the last line of this script's output on success;
#   before it, the same with ours under torch.compile (`gpu_train_step_compiled: ratio=X.XX`).
# A failed or timed-out demo does not stop the benchmark; the script then exits non-zero.
#
#     bash benchmarks/gpu_check.sh        # from anywhere; uses the repository's .venv, made if absent
set -euo pipefail
cd "$(dirname "$0")/.."

nvidia-smi -L
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/pip install -r requirements.txt
fi
# exits 1 with the message when torch has no CUDA (e.g. a CPU build of torch)
.venv/bin/python -c 'import sys, torch; sys.exit(None if torch.cuda.is_available() else
    f"gpu_check: torch {torch.__version__} in .venv sees no GPU: install a CUDA build of torch into .venv")'

log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT
demo_status=0
start=$SECONDS
timeout 180 .venv/bin/python main.py device=cuda amp=bf16 path_log="$log_dir" || demo_status=$?
echo "gpu_check: demo (device=cuda amp=bf16) took $((SECONDS - start)) s, exit status $demo_status"

# compile=true is worth its start-up only where it is faster: measured here, ours compiled vs the original
timeout 120 .venv/bin/python benchmarks/train_step.py --device cuda --xlsr --compile || echo 'gpu_check: compiled run failed'
timeout 150 .venv/bin/python benchmarks/train_step.py --device cuda --xlsr
exit "$demo_status"
