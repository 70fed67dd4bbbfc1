"""Train-step throughput against a plain loop, a hand-tuned loop and the
step's own matmuls.

The model is the Flax example's (784-500-20 MLP, Bernoulli, Adam). One
training step costs about 4.1 MFLOP per example in eleven matmuls: the forward
pass's four, and for each layer the weight gradient and, but for the first
layer, the input gradient (`step_matmuls`).

  vae_jax: the library's update as the training loop runs it: data resident on
           the device, `steps_per_dispatch` steps per jitted lax.scan, state
           donated, metrics left on device, per-example (vmapped) terms and
           keys, unguarded with the end state's finiteness read once per
           dispatch (train.make_multi_step).
  sgd:     the same with optax.sgd in Adam's place: the gap to vae_jax is what
           Adam's pass over the parameters and moments costs beyond SGD's.
  plain:   one jitted step per call, the batch copied from the host, the loss
           read back after every step (the common hand-written loop, e.g. the
           Flax example's).
  hand:    a hand-tuned loop: the same lax.scan over resident data, but the
           model batched by hand, one normal draw per batch, the stable
           softplus, no metrics, no NaN guard (compiled as the library's
           step, backend.jit_train_step).
  matmul:  the limit: each of the step's matmul shapes timed alone
           (`steps_per_dispatch` of them, one after another, in a jitted
           lax.scan) and summed; examples/s = batch / that sum.

All are interleaved in every trial, so a noisy machine slows them alike; the
figures are medians over trials, and every ratio is between figures of the
same run.
"""

import dataclasses
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vae_jax import backend, op_profile, train
from vae_jax import config as config_lib
from vae_jax import data as data_lib
from vae_jax import models as model_lib
from vae_jax.objectives import Objective

Dims = tuple[tuple[tuple[int, ...], tuple[int, ...]], tuple[tuple[int, ...], tuple[int, ...]]]
_FORWARD: Dims = (((1,), (0,)), ((), ()))  # x (B, n) · W (n, m)
_INPUT_GRAD: Dims = (((1,), (1,)), ((), ()))  # g (B, m) · W (n, m)ᵀ
_WEIGHT_GRAD: Dims = (((0,), (0,)), ((), ()))  # x (B, n)ᵀ · g (B, m)


@dataclasses.dataclass
class Setup:
  vae: model_lib.LatentVariableModel
  objective: Objective
  optimizer: optax.GradientTransformation
  images: np.ndarray  # binary float32, like the Flax example's static binarized_mnist


def _flax_example_config():
  """The defaults with the Flax example's model: 784-500-20 MLP, Bernoulli."""
  c = config_lib.default()
  c.model.likelihood = "bernoulli"
  c.model.encoder_hidden = c.model.decoder_hidden = (500,)
  c.model.latent_dim = 20
  return c


def flax_example_setup(num_examples: int = 8192, seed: int = 0) -> Setup:
  c = _flax_example_config()
  vae = model_lib.build(c.model, data_lib.DataSpec((28, 28, 1), 2))
  images = (np.random.default_rng(seed).random((num_examples, 28, 28, 1)) < 0.13).astype(
      np.float32)  # MNIST's share of ink
  return Setup(vae, Objective(), train.build_optimizer(c.optimizer), images)


def _state(s: Setup):
  params = s.vae.init(jax.random.key(0))
  return train.TrainState(jnp.asarray(0, jnp.int32), params, s.optimizer.init(params))


def step_matmuls(vae: model_lib.Flat, batch_size: int, num_samples: int = 1
                 ) -> list[tuple[tuple[int, int], tuple[int, int], Dims, int]]:
  """The matmuls of one training step of an MLP VAE, as (lhs shape, rhs shape,
  dimension numbers, which operand is a weight: 0, 1 or -1 for none).

  For each Dense layer (n -> m) on R rows (B for the encoder, B·k for the
  decoder): the forward x·W, the weight gradient xᵀ·g and, except for the
  encoder's first layer (nobody needs the gradient of the data), g·Wᵀ.
  """
  params = jax.eval_shape(vae.init, jax.random.key(0))
  out = []
  for net, rows in (("encoder", batch_size), ("decoder", batch_size * num_samples)):
    layers = params[net]
    names = sorted((k for k in layers if k.startswith("hidden_")),
                   key=lambda k: int(k.split("_")[1])) + ["output"]
    for i, name in enumerate(names):
      n, m = layers[name]["kernel"].shape
      out.append(((rows, n), (n, m), _FORWARD, 1))
      out.append(((rows, n), (rows, m), _WEIGHT_GRAD, -1))
      if net == "decoder" or i > 0:
        out.append(((rows, m), (n, m), _INPUT_GRAD, 1))
  return out


def _flop(lhs: tuple[int, ...], rhs: tuple[int, ...], dims: Dims) -> int:
  """2 × contraction size × output size of a dot_general without batch dimensions."""
  (lc, rc), _ = dims
  k = int(np.prod([lhs[d] for d in lc]))
  free = [n for d, n in enumerate(lhs) if d not in lc] + [n for d, n in enumerate(rhs)
                                                          if d not in rc]
  return 2 * k * int(np.prod(free))


def flop_per_example(vae: model_lib.Flat, num_samples: int = 1) -> float:
  return sum(_flop(lhs, rhs, dims) for lhs, rhs, dims, _ in step_matmuls(vae, 1, num_samples))


def _examples_per_sec(run: Callable[[], object], examples: int) -> float:
  start = time.perf_counter()
  jax.block_until_ready(run())
  return examples / (time.perf_counter() - start)


def _dot_programs(matmuls, repeats: int, precision: str | None = None) -> list:
  """For each (lhs shape, rhs shape, dimension numbers, which operand is a
  weight) of `matmuls`, a compiled program running that product `repeats`
  times one after another in a lax.scan, as a step runs it: a fresh
  batch-sized operand each time and a weight shared (weight 0 or 1), or both
  operands fresh (-1, a weight gradient). Returns (program, operands) pairs."""
  programs = []
  key = jax.random.key(7)
  for j, (lhs, rhs, dims, weight) in enumerate(matmuls):
    k1, k2 = jax.random.split(jax.random.fold_in(key, j))
    if weight >= 0:  # fresh activations each time, one weight
      w = jax.random.normal(k1, (lhs, rhs)[weight])
      xs = jax.random.normal(k2, (repeats,) + (rhs, lhs)[weight])
      dot = ((lambda x, w, d=dims: jax.lax.dot_general(w, x, d, precision=precision))
             if weight == 0 else
             (lambda x, w, d=dims: jax.lax.dot_general(x, w, d, precision=precision)))
      out_shape = jax.eval_shape(dot, xs[0], w).shape
      body = lambda c, x, w, dot=dot: (dot(x, w), None)
      fn = jax.jit(lambda xs, w, body=body, o=out_shape: jax.lax.scan(
          lambda c, x: body(c, x, w), jnp.zeros(o), xs)[0])
      operands = (xs, w)
    else:  # a weight gradient: both operands fresh
      xs = (jax.random.normal(k1, (repeats,) + lhs), jax.random.normal(k2, (repeats,) + rhs))
      out_shape = (lhs[1], rhs[1])
      fn = jax.jit(lambda xs, d=dims, o=out_shape: jax.lax.scan(
          lambda c, ab: (jax.lax.dot_general(ab[0], ab[1], d, precision=precision), None),
          jnp.zeros(o), xs)[0])
      operands = (xs,)
    jax.block_until_ready(fn(*operands))  # compile
    programs.append((fn, operands))
  return programs


def _seconds_per_dot(programs: list, repeats: int, best_of: int = 1) -> float:
  """Σ over `_dot_programs` of the seconds of one product (each program's best
  of `best_of` runs, divided by `repeats`)."""
  seconds = 0.0
  for fn, operands in programs:
    best = float("inf")
    for _ in range(best_of):
      start = time.perf_counter()
      jax.block_until_ready(fn(*operands))
      best = min(best, time.perf_counter() - start)
    seconds += best / repeats
  return seconds


def matmul_limit_timer(s: Setup, batch_size: int, repeats: int) -> Callable[[], float]:
  """A timer of the step's matmuls alone: each shape of `step_matmuls` run
  `repeats` times, one after another, in a jitted lax.scan (`_dot_programs`);
  returns examples/s = batch / Σ seconds per dot."""
  programs = _dot_programs(step_matmuls(s.vae, batch_size), repeats)
  return lambda: batch_size / _seconds_per_dot(programs, repeats)


def library_timer(s: Setup, batch_size: int, num_steps: int, steps_per_dispatch: int
                  ) -> Callable[[], float]:
  """A timer of the library's update (compiled here); each call trains on."""
  update = train.make_update(s.vae, s.objective, s.optimizer,
                             data_lib.train_transform("none", 2), jax.random.key(1),
                             guarded=False)  # as the training loop runs it
  images = jax.device_put(s.images)
  indices = [data_lib.batch_indices(0, i, steps_per_dispatch, len(s.images), batch_size)
             for i in range(0, num_steps, steps_per_dispatch)]
  box = {"state": update(_state(s), images, indices[0])[0]}  # compile

  def run():
    state, skipped = box["state"], []
    for idx in indices:
      state, m = update(state, images, idx)
      skipped.append(m["skipped"])
    box["state"] = state
    return state, skipped

  def timer() -> float:
    start = time.perf_counter()
    state, skipped = jax.block_until_ready(run())
    rate = len(indices) * steps_per_dispatch * batch_size / (time.perf_counter() - start)
    if float(jnp.sum(jnp.stack(skipped))):  # a skipped step is cheaper: not a fair figure
      raise RuntimeError("a benchmarked step became non-finite")
    return rate
  return timer


def plain_loop_timer(s: Setup, batch_size: int, num_steps: int) -> Callable[[], float]:
  """One jitted step per call, batch from host, loss read back (compiled here)."""
  vae, objective, optimizer = s.vae, s.objective, s.optimizer

  @jax.jit
  def step(params, opt_state, x, rng):
    loss_fn = lambda p: objective.loss(vae, p, x, rng, jnp.asarray(0))
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  state = _state(s)
  box = {"params": state.params, "opt_state": state.opt_state}
  batches = data_lib.batch_indices(0, 0, num_steps + 1, len(s.images), batch_size)
  float(step(box["params"], box["opt_state"], s.images[batches[0]], jax.random.key(0))[2])

  def timer() -> float:
    params, opt_state = box["params"], box["opt_state"]
    start = time.perf_counter()
    for i in range(1, num_steps + 1):
      params, opt_state, loss = step(params, opt_state, s.images[batches[i]],
                                     jax.random.key(i))
      float(loss)
    rate = num_steps * batch_size / (time.perf_counter() - start)
    box.update(params=params, opt_state=opt_state)
    return rate
  return timer


def hand_tuned_update(s: Setup) -> Callable:
  """The hand-tuned loop's jitted (state, images, indices (m, B)) -> (state,
  losses): what the library's step would be with nothing but the model, its
  loss and Adam (batched by hand, one normal draw per batch, the stable
  softplus, no metrics, no NaN guard)."""
  vae, optimizer = s.vae, s.optimizer

  def loss(params, x, rng):
    x = x.reshape(x.shape[0], -1)
    h = vae.encoder.apply({"params": params["encoder"]}, x)
    mean, log_var = jnp.split(h, 2, axis=-1)
    z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(rng, mean.shape)
    # The decoder returns image-shaped logits: flatten, or x · logits broadcasts.
    logits = vae.decoder.apply({"params": params["decoder"]}, z).reshape(x.shape)
    recon = jnp.sum(x * logits - (jnp.maximum(logits, 0.0)
                                  + jnp.log1p(jnp.exp(-jnp.abs(logits)))), axis=-1)
    kl = 0.5 * jnp.sum(jnp.square(mean) + jnp.exp(log_var) - 1.0 - log_var, axis=-1)
    return jnp.mean(kl - recon)

  def step(state, images, idx):
    rng = jax.random.fold_in(jax.random.key(1), state.step)
    value, grads = jax.value_and_grad(loss)(state.params, images[idx], rng)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         opt_state=opt_state), value

  return backend.jit_train_step(lambda state, images, indices: jax.lax.scan(
      lambda st, idx: step(st, images, idx), state, indices),
      donate_argnums=(0,))  # compiled as the library's step


def hand_tuned_timer(s: Setup, batch_size: int, num_steps: int, steps_per_dispatch: int
                     ) -> Callable[[], float]:
  """A timer of `hand_tuned_update` (compiled here); each call trains on."""
  update = hand_tuned_update(s)
  images = jax.device_put(s.images)
  indices = [data_lib.batch_indices(0, i, steps_per_dispatch, len(s.images), batch_size)
             for i in range(0, num_steps, steps_per_dispatch)]
  box = {"state": update(_state(s), images, indices[0])[0]}  # compile

  def run():
    state = box["state"]
    for idx in indices:
      state, values = update(state, images, idx)
    box["state"] = state
    return state, values
  return lambda: _examples_per_sec(run, len(indices) * steps_per_dispatch * batch_size)


def matmul_peak(n: int | None = None, repeats: int = 5, dtype: str = "float32",
                precision: str | None = None) -> float:
  """FLOP/s of the best of `repeats` n×n matmuls in `dtype` at `precision`
  (None: the backend's default; a GPU's float32 default may be TF32); n = 2048
  on a CPU, 8192 on an accelerator (2048² is too small to fill a GPU)."""
  n = n or (2048 if jax.devices()[0].platform == "cpu" else 8192)
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  dot = jax.jit(lambda a, b: jnp.dot(a, b, precision=precision))
  dot(a, b).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    dot(a, b).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n ** 3 / best


def importance_sampling(num_examples: int = 1000, k: int = 5000, batch_size: int = 50,
                        chunk: int = 100, trials: int = 3, profile_ops: bool = False) -> dict:
  """The k-sample log-likelihood estimate (evaluation.estimator_for_params) on
  MNIST-sized examples with the Flax-example model, against its matmul time,
  at 'highest' precision as evaluation runs: the decoder's two products per
  chunk of draws, (batch·chunk, 20)·(20, 500) and (batch·chunk, 500)·(500, 784),
  each shape timed alone (the encoder's once-per-chunk cost, 1/chunk of that,
  is left out), and the same FLOPs at the square 2048² matmul peak.

  The products are timed as the estimate is: all of the run's products of each
  shape, one long run per trial, in turn with the estimate's run. The ratios
  are of the fastest of `trials` runs of each (on a shared machine
  interference only adds time), with the median of each trial's own ratio
  beside. `ratio_to_short_runs` is against each shape's best of 5 runs of 20
  products, the figure this benchmark gave until 2026-12-01: a minimum over
  0.2 s windows against one over 11 s runs, it favours the products wherever
  the machine has slow phases, as this one has.
  `profile_ops`: one batch's estimate op by op (vae_jax.op_profile), per
  example."""
  from vae_jax import evaluation
  s = flax_example_setup(num_examples)
  params = s.vae.init(jax.random.key(0))
  estimator = evaluation.estimator_for_params(s.vae, params, elbo_samples=1,
                                              num_importance_samples=k, chunk=chunk)
  jax.block_until_ready(estimator(params, s.images[:batch_size], jax.random.key(0)))
  rows = batch_size * chunk
  shapes = [(rows, 20, 500), (rows, 500, 784)]
  products = num_examples * k / rows  # of each shape
  flop = num_examples * k * 2 * (20 * 500 + 500 * 784)
  repeats = 20
  programs = _dot_programs([((m, n), (n, o), _FORWARD, 1) for m, n, o in shapes], repeats,
                           "highest")
  calls = max(1, round(products / repeats))  # of each program: the run's products

  def matmul_run() -> float:
    start = time.perf_counter()
    for fn, operands in programs:
      for _ in range(calls):
        out = fn(*operands)
      jax.block_until_ready(out)
    return (time.perf_counter() - start) * products / (calls * repeats)

  times, peaks, matmul_times, short_times = [], [], [], []
  for _ in range(trials):
    peaks.append(matmul_peak(precision="highest"))
    short_times.append(products * _seconds_per_dot(programs, repeats, best_of=5))
    matmul_times.append(matmul_run())
    start = time.perf_counter()
    for i in range(0, num_examples, batch_size):
      out = estimator(params, s.images[i:i + batch_size], jax.random.key(i))
    jax.block_until_ready(out)
    times.append(time.perf_counter() - start)
  seconds, peak, matmul_seconds = min(times), max(peaks), min(matmul_times)
  ops = {}
  if profile_ops:
    batch = s.images[:batch_size]
    ops["ops"] = op_profile.per_unit(op_profile.op_times(
        lambda: jax.block_until_ready(estimator(params, batch, jax.random.key(0))), calls=2),
        batch_size)
  return {**ops, "num_examples": num_examples, "k": k, "batch_size": batch_size, "chunk": chunk,
          "trials": trials, "seconds": seconds, "tflop": flop / 1e12,
          "matmul_seconds": matmul_seconds, "ratio_to_matmul_time": seconds / matmul_seconds,
          "ratio_per_trial": statistics.median(t / m for t, m in zip(times, matmul_times)),
          "short_runs_seconds": min(short_times), "ratio_to_short_runs": seconds / min(short_times),
          "peak_seconds": flop / peak, "ratio_to_peak_time": seconds / (flop / peak),
          "matmul_peak_gflops": peak / 1e9}


def startup() -> dict:
  """`make run`'s job (experiments/digits.py) in fresh processes: the import of
  vae_jax.train, then the seconds to the end of the first dispatch (the run's
  `time_to_first_step`: imports, data, initialisation, compilation) and to the
  end of the run, with an empty persistent compilation cache (cold) and with
  the one the cold run left (warm, every later run's case)."""
  import json
  import os
  import subprocess
  import sys
  import tempfile
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = {}
  with tempfile.TemporaryDirectory() as tmp:
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=os.path.join(tmp, "cache"),
               PYTHONPATH=root)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import vae_jax.train"], env=env, check=True)
    out["import_seconds"] = time.perf_counter() - start
    for name in ("cold", "warm"):
      workdir = os.path.join(tmp, name)
      start = time.perf_counter()
      subprocess.run([sys.executable, os.path.join(root, "scripts", "train.py"),
                      "--config=" + os.path.join(root, "experiments", "digits.py"),
                      f"--workdir={workdir}", "--config.train.progress_bar=false"],
                     env=env, check=True, capture_output=True)
      total = time.perf_counter() - start
      with open(os.path.join(workdir, "metrics.jsonl")) as f:
        first = json.loads(f.readline())["time_to_first_step"]
      out[name] = {"time_to_first_step": first, "total_seconds": total}
  return out


# The published-model configs, each with the image shape of its dataset.
MODEL_SPECS = {"iwae_two_layer.py:iwae,k=5": (28, 28, 1), "mnist_one_hour.py": (28, 28, 1),
               "hierarchical_mnist.py": (28, 28, 1), "cifar10.py": (32, 32, 3)}


def _xla_flop(program) -> float:
  """FLOPs by XLA's cost analysis of a lowered (or compiled) program. The
  lowered one, before the backend's passes, is the same on every device: a
  GPU's compiled program hides its matmuls in library calls the analysis does
  not count (it gave the one-hour MLP's step 0.06 GFLOP on an H200, 2.5 on CPU)."""
  cost = program.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", float("nan")))


def model_step(spec: str, shape: tuple[int, ...], trials: int = 3, min_seconds: float = 2.0,
               batch_size: int | None = None, overrides: dict | None = None) -> dict:
  """The library's train step on the model and batch of `experiments/<spec>`,
  on random pixels: examples/s (median of `trials`, each at least
  `min_seconds`), the FLOPs of one step from XLA's cost analysis of the
  lowered one-step program (a loop's body would be counted once), and that
  FLOP rate as a fraction of the matmul peak (`matmul_peak`, in the config's
  train.compute_dtype) measured between trials."""
  import os

  from vae_jax import cli, sweeps
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  c = sweeps.apply(cli.load_config_file(os.path.join(root, "experiments", spec)),
                   overrides or {})
  b = batch_size or c.train.batch_size
  binary = c.model.likelihood == "bernoulli"
  vae = model_lib.build(c.model, data_lib.DataSpec(shape, 2 if binary else 256))
  vae = vae.computing_in(c.train.compute_dtype)
  s = Setup(vae, Objective.from_config(c.objective), train.build_optimizer(c.optimizer),
            np.random.default_rng(0).integers(0, 256, (4 * b,) + shape, dtype=np.uint8))
  transform = data_lib.train_transform("binarize" if binary else "none", 256)
  images = jax.device_put(s.images)
  # One jitted function for any number of steps per dispatch (the indices' shape).
  update = train.make_update(vae, s.objective, s.optimizer, transform, jax.random.key(1),
                             guarded=False)
  idx = data_lib.batch_indices(0, 0, 1, len(s.images), b)
  flop = _xla_flop(update.lower(_state(s), images, idx))
  spd = c.train.steps_per_dispatch
  box = {"state": update(_state(s), images,
                         data_lib.batch_indices(0, 0, spd, len(s.images), b))[0]}

  def dispatches(n: int) -> float:
    start, state = time.perf_counter(), box["state"]
    for i in range(n):
      state, _ = update(state, images, data_lib.batch_indices(0, i * spd, spd, len(s.images), b))
    box["state"] = jax.block_until_ready(state)
    return time.perf_counter() - start

  n = max(1, int(min_seconds / max(dispatches(1), 1e-4)))
  rates, peaks = [], []
  for _ in range(trials):
    peaks.append(matmul_peak(dtype=c.train.compute_dtype))
    rates.append(n * spd * b / dispatches(n))
  rate, peak = statistics.median(rates), statistics.median(peaks)
  return {"config": spec, "model": c.model.name, "compute_dtype": c.train.compute_dtype,
          "image_shape": list(shape), "batch_size": b,
          "steps_per_dispatch": spd, "examples_per_sec": rate, "flop_per_step": flop,
          "gflops": rate / b * flop / 1e9, "matmul_peak_gflops": peak / 1e9,
          "fraction_of_peak": rate / b * flop / peak}


def format_models(rows: list[dict]) -> str:
  lines = [f"{'config':<30} {'model':<10} {'dtype':<8} {'batch':>5} {'ex/s':>9} "
           f"{'GFLOP/step':>11} {'GFLOP/s':>8} {'% of peak':>9}"]
  for r in rows:
    lines.append(f"{r['config']:<30} {r['model']:<10} {r['compute_dtype']:<8} "
                 f"{r['batch_size']:>5} "
                 f"{r['examples_per_sec']:>9.0f} {r['flop_per_step'] / 1e9:>11.3f} "
                 f"{r['gflops']:>8.1f} {100 * r['fraction_of_peak']:>8.1f}%")
  return "\n".join(lines)


CONTENDERS = ("vae_jax", "sgd", "plain", "hand", "matmul")


def run(batch_sizes=(32, 128, 512, 2048), trials: int = 5, examples_per_trial: int = 65536,
        steps_per_dispatch: int = 20, profile_ops: bool = False) -> dict:
  """Interleaved trials of every contender at every batch size; medians and
  the ratios between them (each from the same run). `profile_ops`: the
  library's step op by op at each batch size (vae_jax.op_profile, after the
  trials), its slowest 20 ops per step."""
  s = flax_example_setup()
  c = _flax_example_config()
  c.optimizer.name = "sgd"
  sgd = dataclasses.replace(s, optimizer=train.build_optimizer(c.optimizer))
  timers: dict[str, Callable[[], float]] = {}
  steps = {b: max(steps_per_dispatch, examples_per_trial // b // steps_per_dispatch
                  * steps_per_dispatch) for b in batch_sizes}
  for b in batch_sizes:  # all compiled before any timing
    timers[f"vae_jax_{b}"] = library_timer(s, b, steps[b], steps_per_dispatch)
    # The same step with SGD in Adam's place: the gap is what Adam's pass over
    # the parameters and moments costs beyond SGD's (the limit counts neither).
    timers[f"sgd_{b}"] = library_timer(sgd, b, steps[b], steps_per_dispatch)
    timers[f"plain_{b}"] = plain_loop_timer(s, b, steps[b])
    timers[f"hand_{b}"] = hand_tuned_timer(s, b, steps[b], steps_per_dispatch)
    timers[f"matmul_{b}"] = matmul_limit_timer(s, b, steps_per_dispatch)
  raw: dict[str, list[float]] = {"peak_flops": []}
  for _ in range(trials):
    raw["peak_flops"].append(matmul_peak())
    for b in batch_sizes:
      for name in CONTENDERS:
        raw.setdefault(f"{name}_{b}", []).append(timers[f"{name}_{b}"]())
  peak = statistics.median(raw["peak_flops"])
  flop = flop_per_example(s.vae)
  rows = []
  for b in batch_sizes:
    med = {name: statistics.median(raw[f"{name}_{b}"]) for name in CONTENDERS}
    row = {"batch_size": b, **{f"{n}_examples_per_sec": v for n, v in med.items()}}
    row.update({f"{n}_fraction_of_matmul_limit": med[n] / med["matmul"]
                for n in ("vae_jax", "sgd", "plain", "hand")})
    row["speedup_over_plain"] = med["vae_jax"] / med["plain"]
    row["vae_jax_over_hand"] = med["vae_jax"] / med["hand"]
    row["matmul_limit_fraction_of_peak"] = med["matmul"] * flop / peak
    row["vae_jax_fraction_of_matmul_peak"] = med["vae_jax"] * flop / peak
    if profile_ops:
      row["vae_jax_ops"] = op_profile.per_unit(
          op_profile.op_times(timers[f"vae_jax_{b}"], calls=1), steps[b])
    rows.append(row)
  return {"device": jax.devices()[0].device_kind, "platform": jax.devices()[0].platform,
          "matmul_peak_gflops": peak / 1e9, "flop_per_example": flop,
          "trials": trials, "steps_per_dispatch": steps_per_dispatch, "rows": rows,
          "raw": raw}


def format_table(result: dict) -> str:
  lines = [f"{result['platform']} ({result['device']}), {result['flop_per_example'] / 1e6:.2f}"
           f" MFLOP per example and step, float32 matmul peak (default precision) "
           f"{result['matmul_peak_gflops']:.0f} GFLOP/s; medians of {result['trials']} "
           "interleaved trials; % = of the matmul-only limit (same run)",
           f"{'batch':>6} {'vae_jax ex/s':>13} {'plain ex/s':>11} {'hand ex/s':>10} "
           f"{'matmul ex/s':>12} {'vae_jax %':>10} {'with SGD %':>11} {'plain %':>8} "
           f"{'hand %':>7} {'vs plain':>9}"]
  for r in result["rows"]:
    lines.append(f"{r['batch_size']:>6} {r['vae_jax_examples_per_sec']:>13.0f} "
                 f"{r['plain_examples_per_sec']:>11.0f} {r['hand_examples_per_sec']:>10.0f} "
                 f"{r['matmul_examples_per_sec']:>12.0f} "
                 f"{100 * r['vae_jax_fraction_of_matmul_limit']:>9.1f}% "
                 f"{100 * r['sgd_fraction_of_matmul_limit']:>10.1f}% "
                 f"{100 * r['plain_fraction_of_matmul_limit']:>7.1f}% "
                 f"{100 * r['hand_fraction_of_matmul_limit']:>6.1f}% "
                 f"{r['speedup_over_plain']:>8.2f}x")
  return "\n".join(lines)


def vectorized_sweep(size: str, members: int = 8, num_steps: int = 400,
                     steps_per_dispatch: int = 20, trials: int = 3,
                     guarded: bool = False, profile_ops: bool = False) -> dict:
  """Training throughput of `members` runs differing in seed and β: one after
  another (each the library's jitted update) vs one vmapped program
  (vae_jax.vectorized). size 'digits': 64-256-8 Binomial, batch 64; 'mnist':
  784-500-20 Bernoulli, batch 128; 'mnist20': the same at the IWAE paper's
  batch of 20. Both unguarded, as the training loops run them (`guarded`: the
  vmapped one guarded). Compilation and the states' set-up excluded; trials
  interleaved. `profile_ops`: each program's time per step op by op
  (vae_jax.op_profile), the slowest 20 of one member's and of the vmapped."""
  from vae_jax import vectorized
  if size == "digits":
    c = config_lib.default()
    spec, batch = data_lib.DataSpec((8, 8, 1), 17), 64
    images = np.random.default_rng(0).integers(0, 17, (1297, 8, 8, 1)).astype(np.float32)
    transform = data_lib.train_transform("none", 17)
  else:
    c = _flax_example_config()
    spec, batch = data_lib.DataSpec((28, 28, 1), 2), 20 if size == "mnist20" else 128
    images = flax_example_setup().images
    transform = data_lib.train_transform("none", 2)
  c.train.batch_size = batch
  vae = model_lib.build(c.model, spec)
  optimizer = train.build_optimizer(c.optimizer)
  betas = np.linspace(0.5, 2.0, members).astype(np.float32)
  states = [train.initial_state(vae, optimizer, jax.random.key(i), None)
            for i in range(members)]
  keys = [jax.random.key(100 + i) for i in range(members)]
  chunks = range(0, num_steps, steps_per_dispatch)
  idx = {i: [data_lib.batch_indices(i, s, steps_per_dispatch, len(images), batch)
             for s in chunks] for i in range(members)}
  device_images = jax.device_put(images)
  separate = [train.make_update(vae, dataclasses.replace(Objective(), beta=float(b)), optimizer,
                                transform, k, guarded=False)  # as a run's loop
              for b, k in zip(betas, keys)]
  together = vectorized.make_update(vae, Objective(), c, transform, guarded=guarded)
  stacked_idx = [np.stack([idx[i][j] for i in range(members)]) for j in range(len(chunks))]
  args = (jnp.stack(keys), jnp.asarray(betas), jnp.full(members, c.optimizer.learning_rate,
                                                         jnp.float32))

  # Each trial starts from fresh copies of the initial states (the updates
  # donate them), made before its clock starts: stacking the members' states
  # is a run's one-off set-up, not training (on 2 CPU cores it took 17-19 ms,
  # the separate runs' copies 9 ms).
  copies = lambda: [jax.tree.map(jnp.copy, s) for s in states]
  stacked = lambda: jax.tree.map(lambda *a: jnp.stack(a), *states)

  def run_separate(fresh):
    out = []
    for m, state in enumerate(fresh):
      for j in idx[m]:
        state, metrics = separate[m](state, device_images, j)
      out.append(metrics)
    jax.block_until_ready(out)

  def run_together(state):
    for j in stacked_idx:
      state, metrics = together(state, device_images, j, *args)
    jax.block_until_ready(metrics)

  for m in range(members):  # compile both
    jax.block_until_ready(separate[m](jax.tree.map(jnp.copy, states[m]), device_images,
                                      idx[m][0]))
  jax.block_until_ready(together(jax.tree.map(lambda *a: jnp.stack(a), *states),
                                 device_images, stacked_idx[0], *args))
  times: dict[str, list[float]] = {"separate": [], "vectorized": []}
  for _ in range(trials):
    for name, fn, fresh in (("separate", run_separate, copies),
                            ("vectorized", run_together, stacked)):
      inputs = jax.block_until_ready(fresh())
      start = time.perf_counter()
      fn(inputs)
      times[name].append(time.perf_counter() - start)
  sep, vec = statistics.median(times["separate"]), statistics.median(times["vectorized"])
  examples = members * len(chunks) * steps_per_dispatch * batch
  ops = {}
  if profile_ops:  # the timed loops again (one member's alone), inputs made beforehand
    one_member = lambda: [jax.tree.map(jnp.copy, states[0])]
    for name, fn, fresh in (("separate", run_separate, one_member),
                            ("vectorized", run_together, stacked)):
      inputs = iter(jax.block_until_ready([fresh(), fresh()]))  # one per profiled call
      ops[f"{name}_ops"] = op_profile.per_unit(
          op_profile.op_times(lambda fn=fn, inputs=inputs: fn(next(inputs)), calls=2),
          len(chunks) * steps_per_dispatch)
  return {"size": size, "members": members, "steps": len(chunks) * steps_per_dispatch,
          "batch_size": batch, "steps_per_dispatch": steps_per_dispatch, "guarded": guarded,
          "separate_seconds": sep, "vectorized_seconds": vec,
          "separate_step_seconds": sep / (members * len(chunks) * steps_per_dispatch),
          "vectorized_step_seconds": vec / (len(chunks) * steps_per_dispatch),
          "separate_examples_per_sec": examples / sep,
          "vectorized_examples_per_sec": examples / vec, "speedup": sep / vec,
          "trials": trials, "device": jax.devices()[0].device_kind, **ops}
