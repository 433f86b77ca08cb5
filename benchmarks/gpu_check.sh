#!/usr/bin/env bash
# The GPU checks, one script under 10 minutes on one NVIDIA H100 or H200:
#   1. does bf16 train the demo as fp32 does? The embedded demo on CUDA twice, same seed, shipped
#      teacher: `main.py device=cuda amp=none`, then `amp=bf16` (at most 200 s each; about 100 s on an
#      H200), timed; then both runs' curves side by side (benchmarks/side_by_side.py: each epoch's
#      losses and validation EER, the final Vox1-O / E / H EER; last line `side_by_side: Vox1-O eer
#      fp32=X bf16=Y`). This section alone, well inside 8 minutes: `bash benchmarks/gpu_check.sh bf16`;
#   2. benchmarks/bench_enroll.py on CUDA: batched vs one-at-a-time enrollment (`bench_enroll: ratio=X`);
#   3. benchmarks/train_step.py on CUDA at the wav2vec2-large-xlsr-53 shape (random weights, 4-layer
#      student, 16 x 2 s crops): utterances/s, peak GPU memory and MFU of ours (shared front end,
#      bf16, SDPA) and of the original formulation (duplicated batch, fp32, eager attention), first
#      with ours under torch.compile (`gpu_train_step_compiled: ratio=X.XX`), then without; its last
#      line, `gpu_train_step: ratio=X.XX`, is the last line of this script's output on success.
# A failed or timed-out demo does not stop the benchmark; the script then exits non-zero.
#
#     bash benchmarks/gpu_check.sh          # from anywhere; PYTHON=... picks the interpreter
#     bash benchmarks/gpu_check.sh bf16     # section 1 only
set -euo pipefail
cd "$(dirname "$0")/.."

nvidia-smi -L
# the python to use: $PYTHON, else the first of .venv/bin/python and python3 whose torch sees a GPU
# (a GPU machine's own python3 may hold a CUDA build of torch; soundfile may have to be added there)
sees_gpu() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }
if [ -n "${PYTHON:-}" ]; then
    py=$PYTHON
elif [ -x .venv/bin/python ] && sees_gpu .venv/bin/python; then
    py=.venv/bin/python
elif sees_gpu python3; then
    py=python3
else
    echo 'gpu_check: no python here whose torch sees a GPU (.venv/bin/python, python3); set PYTHON=...' >&2
    exit 1
fi
"$py" -c 'import torch, transformers, soundfile; print("gpu_check: torch", torch.__version__, "transformers",
    transformers.__version__, "on", torch.cuda.get_device_name())'

log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT
demo_status=0
for amp in none bf16; do
    start=$SECONDS
    status=0
    timeout 200 "$py" main.py device=cuda amp=$amp path_log="$log_dir/$amp" || status=$?
    echo "gpu_check: demo (device=cuda amp=$amp) took $((SECONDS - start)) s, exit status $status"
    [ "$status" -eq 0 ] || demo_status=$status
done
"$py" benchmarks/side_by_side.py fp32="$log_dir/none" bf16="$log_dir/bf16" || demo_status=1
[ "${1:-all}" = bf16 ] && exit "$demo_status"

timeout 120 "$py" benchmarks/bench_enroll.py --device cuda --utterances 96 || echo 'gpu_check: bench_enroll failed'

# compile=true is worth its start-up only where it is faster: measured here, ours compiled vs the original
timeout 120 "$py" benchmarks/train_step.py --device cuda --xlsr --compile || echo 'gpu_check: compiled run failed'
timeout 150 "$py" benchmarks/train_step.py --device cuda --xlsr
exit "$demo_status"
