#!/usr/bin/env bash
# The GPU figures of the README's speed section, in one go, each part under its
# own time limit so that a slow part leaves the others' results:
#   1. the train-step benchmark (vae_jax, plain, hand-tuned, matmul limit) and
#      the k=5000 log-likelihood against its matmul time;
#   2. each published model's train step in float32 and bfloat16, and 8-member
#      vectorised sweeps against one member (batch 128 and the IWAE paper's 20),
#      with both programs' kernels timed one by one (--profile_ops);
#   3. mixed precision's effect on the test NLL: mnist_one_hour.py trained in
#      float32 and in bfloat16 for the same steps, each evaluated in float32.
#
#   scripts/gpu_benchmark.sh OUT_DIR [MNIST_NPZ] [TRAIN_STEPS]
#
# Writes OUT_DIR/{gpu.txt,log.txt,train.json,models.json,eval_float32.json,
# eval_bfloat16.json}. Like training on a GPU (vae_jax.backend), it runs with
# XLA's deterministic GPU ops.
set -u
out=$(realpath -m "${1:?usage: scripts/gpu_benchmark.sh OUT_DIR [MNIST_NPZ] [TRAIN_STEPS]}")
npz=$(realpath -m "${2:-$(dirname "$0")/../../shared/data/mnist/train.npz}")
steps=${3:-30000}
if [ "$steps" -le 1000 ]; then echo "TRAIN_STEPS must exceed the 1,000 warm-up steps" >&2; exit 2; fi
cd "$(dirname "$0")/.."  # the repository root
runs=$(mktemp -d)  # fresh run directories: a rerun never resumes or reuses an old run
py=${PYTHON:-python3}
backend=${BACKEND:-gpu}  # BACKEND=cpu and EXTRA (benchmark flags) try it out on a CPU
mkdir -p "$out"
export PYTHONUNBUFFERED=1 XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_deterministic_ops=true"
log="$out/log.txt"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $py -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
} > "$out/gpu.txt" 2>&1
part() {  # part SECONDS NAME COMMAND...: one part, its output in the log, timed
  local limit=$1 name=$2; shift 2
  echo "== $name ($(date +%T), limit ${limit}s)" >> "$log"
  local start=$SECONDS
  timeout "$limit" "$@" >> "$log" 2>&1
  echo "== $name: exit $?, $((SECONDS - start)) s" >> "$log"
}
part 200 train "$py" scripts/benchmark.py --what=train,importance --trials=3 \
  --out="$out/train.json" ${EXTRA:-}
part 140 models "$py" scripts/benchmark.py --what=models,vectorized --trials=3 \
  --compute_dtypes=float32,bfloat16 --vectorized_sizes=mnist,mnist20 --profile_ops \
  --out="$out/models.json" ${EXTRA:-}
for dtype in float32 bfloat16; do
  part 110 "nll $dtype" "$py" scripts/train.py --config=experiments/mnist_one_hour.py:npz \
    --config.data.path="$npz" --config.backend="$backend" --config.train.compute_dtype=$dtype \
    --config.train.num_steps="$steps" --config.optimizer.decay_steps=$((steps - 1000)) \
    --config.train.progress_bar=false \
    --config.eval.figures=false --workdir="$runs/nll_$dtype" ${TRAIN_EXTRA:-}
  cp "$runs/nll_$dtype/eval.json" "$out/eval_$dtype.json" 2>> "$log"
done
