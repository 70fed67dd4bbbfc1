"""Train-step throughput against a plain loop and the float32 matmul peak.

The model is the Flax example's (784-500-20 MLP, Bernoulli, Adam). One
training step costs about 4.1 MFLOP per example: the forward pass's four
matmuls (2 · (784·500 + 500·40 + 20·500 + 500·784) = 1.63 MFLOP), their
backward pass (twice that, less the input gradient of the first layer, which
nobody needs: 2.47 MFLOP).

  vae_jax: the library's update, data resident on the device, `steps_per_dispatch`
           steps per jitted lax.scan, state donated, metrics left on device.
  plain:   one jitted step per call, the batch copied from the host, the loss
           read back after every step (the common hand-written loop).
  peak:    the best of several 2048×2048 float32 `jnp.dot`s.

All three are interleaved in every trial, so a noisy machine slows them alike;
the figures are medians over trials.
"""

import dataclasses
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vae_jax import config as config_lib
from vae_jax import data as data_lib
from vae_jax import models as model_lib
from vae_jax import train
from vae_jax.objectives import Objective

FLOP_PER_EXAMPLE = 2 * (784 * 500 + 500 * 40 + 20 * 500 + 500 * 784) * 3 - 2 * 784 * 500 * 1


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


def time_library(s: Setup, batch_size: int, num_steps: int, steps_per_dispatch: int) -> float:
  """Examples per second of the library's update (compiled beforehand)."""
  update = train.make_update(s.vae, s.objective, s.optimizer,
                             data_lib.train_transform("none", 2), jax.random.key(1))
  images = jax.device_put(s.images)
  state = _state(s)
  indices = [data_lib.batch_indices(0, i, steps_per_dispatch, len(s.images), batch_size)
             for i in range(0, num_steps, steps_per_dispatch)]
  state, m = update(state, images, indices[0])  # compile
  jax.block_until_ready(m)
  start = time.perf_counter()
  for idx in indices:
    state, m = update(state, images, idx)
  jax.block_until_ready((state, m))
  return len(indices) * steps_per_dispatch * batch_size / (time.perf_counter() - start)


def time_plain_loop(s: Setup, batch_size: int, num_steps: int) -> float:
  """Examples per second of one jitted step per call, batch from host, loss read back."""
  vae, objective, optimizer = s.vae, s.objective, s.optimizer

  @jax.jit
  def step(params, opt_state, x, rng):
    loss_fn = lambda p: objective.loss(vae, p, x, rng, jnp.asarray(0))
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  state = _state(s)
  params, opt_state = state.params, state.opt_state
  batches = data_lib.batch_indices(0, 0, num_steps + 1, len(s.images), batch_size)

  def host_batch(i):
    return s.images[batches[i]]

  params, opt_state, loss = step(params, opt_state, host_batch(0), jax.random.key(0))
  float(loss)  # compile
  start = time.perf_counter()
  for i in range(1, num_steps + 1):
    params, opt_state, loss = step(params, opt_state, host_batch(i), jax.random.key(i))
    float(loss)
  return num_steps * batch_size / (time.perf_counter() - start)


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
  """FLOP/s of the best of `repeats` n×n float32 matmuls."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  dot = jax.jit(jnp.dot)
  dot(a, b).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    dot(a, b).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n ** 3 / best


def importance_sampling(num_examples: int = 1000, k: int = 5000, batch_size: int = 50,
                        chunk: int = 100, trials: int = 2) -> dict:
  """The k-sample log-likelihood estimate (evaluation.estimator_for_params) on
  MNIST-sized examples with the Flax-example model, against its matmul time:
  the decoder's 2·(20·500 + 500·784) FLOP per sample at the measured peak
  (the encoder's once-per-chunk cost, 1/chunk of that, is left out)."""
  from vae_jax import evaluation
  s = flax_example_setup(num_examples)
  params = s.vae.init(jax.random.key(0))
  estimator = evaluation.estimator_for_params(s.vae, params, elbo_samples=1,
                                        num_importance_samples=k, chunk=chunk)
  jax.block_until_ready(estimator(params, s.images[:batch_size], jax.random.key(0)))
  flop = num_examples * k * 2 * (20 * 500 + 500 * 784)
  times, peaks = [], []
  for _ in range(trials):
    peaks.append(matmul_peak())
    start = time.perf_counter()
    for i in range(0, num_examples, batch_size):
      out = estimator(params, s.images[i:i + batch_size], jax.random.key(i))
    jax.block_until_ready(out)
    times.append(time.perf_counter() - start)
  seconds, peak = statistics.median(times), statistics.median(peaks)
  return {"num_examples": num_examples, "k": k, "batch_size": batch_size, "chunk": chunk,
          "seconds": seconds, "tflop": flop / 1e12, "matmul_seconds": flop / peak,
          "ratio_to_matmul_time": seconds / (flop / peak), "matmul_peak_gflops": peak / 1e9}


def run(batch_sizes=(32, 128, 512, 2048), trials: int = 5, examples_per_trial: int = 65536,
        steps_per_dispatch: int = 20) -> dict:
  """Interleaved trials; returns medians and ratios."""
  s = flax_example_setup()
  raw: dict[str, list[float]] = {"peak_flops": []}
  for _ in range(trials):
    raw["peak_flops"].append(matmul_peak())
    for b in batch_sizes:
      steps = max(steps_per_dispatch, examples_per_trial // b // steps_per_dispatch
                  * steps_per_dispatch)
      raw.setdefault(f"vae_jax_{b}", []).append(
          time_library(s, b, steps, steps_per_dispatch))
      raw.setdefault(f"plain_{b}", []).append(time_plain_loop(s, b, steps))
  peak = statistics.median(raw["peak_flops"])
  rows = []
  for b in batch_sizes:
    ours, plain = statistics.median(raw[f"vae_jax_{b}"]), statistics.median(raw[f"plain_{b}"])
    rows.append({"batch_size": b, "vae_jax_examples_per_sec": ours,
                 "plain_loop_examples_per_sec": plain, "speedup_over_plain": ours / plain,
                 "fraction_of_matmul_peak": ours * FLOP_PER_EXAMPLE / peak,
                 "plain_fraction_of_matmul_peak": plain * FLOP_PER_EXAMPLE / peak})
  return {"device": jax.devices()[0].device_kind, "platform": jax.devices()[0].platform,
          "matmul_peak_gflops": peak / 1e9, "flop_per_example": FLOP_PER_EXAMPLE,
          "trials": trials, "steps_per_dispatch": steps_per_dispatch, "rows": rows,
          "raw": raw}


def format_table(result: dict) -> str:
  lines = [f"{result['platform']} ({result['device']}), float32 matmul peak "
           f"{result['matmul_peak_gflops']:.1f} GFLOP/s, {result['flop_per_example'] / 1e6:.2f}"
           f" MFLOP per example, medians of {result['trials']} interleaved trials",
           f"{'batch':>6} {'vae_jax ex/s':>13} {'plain ex/s':>11} {'speed-up':>9} "
           f"{'vae_jax %peak':>14} {'plain %peak':>12}"]
  for r in result["rows"]:
    lines.append(f"{r['batch_size']:>6} {r['vae_jax_examples_per_sec']:>13.0f} "
                 f"{r['plain_loop_examples_per_sec']:>11.0f} {r['speedup_over_plain']:>8.2f}x "
                 f"{100 * r['fraction_of_matmul_peak']:>13.1f}% "
                 f"{100 * r['plain_fraction_of_matmul_peak']:>11.1f}%")
  return "\n".join(lines)


def vectorized_sweep(size: str, members: int = 8, num_steps: int = 400,
                     steps_per_dispatch: int = 20, trials: int = 3) -> dict:
  """Training throughput of `members` runs differing in seed and β: one after
  another (each the library's jitted update) vs one vmapped program
  (vae_jax.vectorized). size 'digits': 64-256-8 Binomial, batch 64; 'mnist':
  784-500-20 Bernoulli, batch 128. Compilation excluded; trials interleaved."""
  from vae_jax import vectorized
  if size == "digits":
    c = config_lib.default()
    spec, batch = data_lib.DataSpec((8, 8, 1), 17), 64
    images = np.random.default_rng(0).integers(0, 17, (1297, 8, 8, 1)).astype(np.float32)
    transform = data_lib.train_transform("none", 17)
  else:
    c = _flax_example_config()
    spec, batch = data_lib.DataSpec((28, 28, 1), 2), 128
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
                                transform, k) for b, k in zip(betas, keys)]
  together = vectorized.make_update(vae, Objective(), c, transform)
  stacked_idx = [np.stack([idx[i][j] for i in range(members)]) for j in range(len(chunks))]
  args = (jnp.stack(keys), jnp.asarray(betas), jnp.full(members, c.optimizer.learning_rate,
                                                         jnp.float32))

  def run_separate():
    out = []
    for m in range(members):
      state = jax.tree.map(jnp.copy, states[m])
      for j in idx[m]:
        state, metrics = separate[m](state, device_images, j)
      out.append(metrics)
    jax.block_until_ready(out)

  def run_together():
    state = jax.tree.map(lambda *a: jnp.stack(a), *states)
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
    for name, fn in (("separate", run_separate), ("vectorized", run_together)):
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  sep, vec = statistics.median(times["separate"]), statistics.median(times["vectorized"])
  examples = members * len(chunks) * steps_per_dispatch * batch
  return {"size": size, "members": members, "steps": len(chunks) * steps_per_dispatch,
          "batch_size": batch, "separate_seconds": sep, "vectorized_seconds": vec,
          "separate_examples_per_sec": examples / sep,
          "vectorized_examples_per_sec": examples / vec, "speedup": sep / vec,
          "trials": trials, "device": jax.devices()[0].device_kind}
