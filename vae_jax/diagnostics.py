"""Where a VAE spends its nats: active units, mutual information, the gap.

All take per-example posterior parameters (or the model and data) and return
plain numbers, so they serve evaluation, reports and tests alike.
"""

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import logsumexp

from vae_jax import distributions
from vae_jax.models import LatentVariableModel, Params

ACTIVE_THRESHOLD = 0.01


def active_units(q_means: np.ndarray, threshold: float = ACTIVE_THRESHOLD
                 ) -> tuple[int, np.ndarray]:
  """Burda et al. 2016: unit u is active when Cov_x(E_q[z_u | x]) > threshold.

  Returns the count and the per-unit variance of the posterior mean.
  """
  variance = np.var(np.asarray(q_means, np.float64), axis=0)
  return int(np.sum(variance > threshold)), variance


def combine_moments(acc: tuple | None, batch: np.ndarray) -> tuple:
  """(count, mean, M2) per unit of the rows seen so far, updated with `batch`
  (rows, *unit shape) by Chan et al.'s pairwise formula: the variance of a
  whole split in one pass, as accurate as np.var over all rows at once."""
  x = np.asarray(batch, np.float64).reshape(len(batch), -1)
  n_b, mean_b = len(x), x.mean(axis=0)
  m2_b = np.sum((x - mean_b) ** 2, axis=0)
  if acc is None:
    return n_b, mean_b, m2_b
  n_a, mean_a, m2_a = acc
  n = n_a + n_b
  delta = mean_b - mean_a
  return n, mean_a + delta * n_b / n, m2_a + m2_b + delta ** 2 * n_a * n_b / n


def mutual_information(q_means: np.ndarray, q_log_vars: np.ndarray, rng: jax.Array,
                       chunk: int | None = None) -> float:
  """I(x; z) under q(x, z) = p_data(x) q(z|x), in nats, with q(z) the mixture of
  the N posteriors (Hoffman & Johnson 2016):

    I = E_n E_{z ~ q(z|x_n)} [log q(z|x_n) - log (1/N) Σ_m q(z|x_m)]

  one z per example, rows streamed in chunks (memory chunk × N × d, at most
  128 rows and ~20M floats). The estimate is at most log N, and 0 when q(z|x)
  ignores x.
  """
  means, log_vars = jnp.asarray(q_means), jnp.asarray(q_log_vars)
  n = means.shape[0]
  chunk = chunk or max(1, min(128, 20_000_000 // (n * means.shape[1])))
  z = distributions.DiagGaussian(means, log_vars).sample(rng, 1)[0]  # (N, d)
  pad = (-n) % chunk
  z_chunks = jnp.pad(z, ((0, pad), (0, 0))).reshape(-1, chunk, z.shape[-1])

  def rows(zc):
    # log q(z_i | x_m) for the chunk's z_i against all m: (chunk, N)
    return distributions.gaussian_log_prob(means[None], log_vars[None], zc[:, None], 1)

  def per_chunk(zc):
    log_q = rows(zc)
    return logsumexp(log_q, axis=1) - math.log(n)

  log_marginal = jax.lax.map(jax.jit(per_chunk), z_chunks).reshape(-1)[:n]
  log_cond = distributions.gaussian_log_prob(means, log_vars, z, 1)
  return float(jnp.mean(log_cond - log_marginal))


def _elbo(model: LatentVariableModel, params: Params, q: distributions.DiagGaussian,
          x: jax.Array, rng: jax.Array, num_samples: int) -> jax.Array:
  """The ELBO of posterior q (closed-form KL), from `num_samples` draws."""
  d = model.draws_from(params, x, q, rng, num_samples)
  return jnp.mean(d.log_px_z - sum(d.kl_analytic_per_group().values()))


def optimise_posteriors(model: LatentVariableModel, params: Params, images: jax.Array,
                        rng: jax.Array, *,
                        num_steps: int, num_samples: int = 8,
                        learning_rate: float = 1e-2) -> distributions.DiagGaussian:
  """max over (μ, log σ²) of each example's ELBO, starting at the encoder's q:
  the classical non-amortised variational inference, with optax Adam,
  vmapped over examples (Cremer et al. 2018, "Inference Suboptimality")."""
  opt = optax.adam(learning_rate)

  def neg_elbo(q, x, r):
    return -_elbo(model, params, q, x, r, num_samples)

  def fit_one(x, r):
    q = model.encode(params, x)

    def step(carry, i):
      q, state = carry
      grads = jax.grad(neg_elbo)(q, x, jax.random.fold_in(r, i))
      updates, state = opt.update(grads, state, q)
      return (optax.apply_updates(q, updates), state), None

    (q, _), _ = jax.lax.scan(step, (q, opt.init(q)), jnp.arange(num_steps))
    return q

  rngs = jax.random.split(rng, images.shape[0])
  return jax.jit(jax.vmap(fit_one))(images, rngs)


def gap_decomposition(model: LatentVariableModel, params: Params, images: np.ndarray,
                      rng: jax.Array, *,
                      num_steps: int, elbo_samples: int, num_importance_samples: int,
                      batch_size: int) -> dict[str, Any]:
  """log p(x) - ELBO(q_enc) = approximation gap + amortisation gap, where

    approximation gap = log p(x) - max_q ELBO(q)        (the variational family)
    amortisation gap  = max_q ELBO(q) - ELBO(q_enc)     (the encoder)

  ELBOs are averaged over `elbo_samples` draws with analytic KL; log p(x) is
  the importance-sampled estimate with the optimised q as proposal (better
  than the encoder's, so the gaps are not inflated by a poor proposal).
  """
  fit_rng, elbo_rng, is_rng = jax.random.split(rng, 3)
  parts: dict[str, list[np.ndarray]] = {"enc": [], "opt": [], "log_px": []}

  def elbo_of(q, x, r):
    return _elbo(model, params, q, x, r, elbo_samples)

  def log_px_of(q, x, r):
    log_w = model.draws_from(params, x, q, r, num_importance_samples).log_weights()
    return logsumexp(log_w) - math.log(num_importance_samples)

  batched = jax.jit(jax.vmap(lambda q_enc, q_opt, x, r: (
      elbo_of(q_enc, x, r), elbo_of(q_opt, x, r),
      log_px_of(q_opt, x, jax.random.fold_in(r, 1)))))
  for start in range(0, len(images), batch_size):
    x = jnp.asarray(images[start:start + batch_size])
    q_opt = optimise_posteriors(model, params, x, jax.random.fold_in(fit_rng, start),
                                num_steps=num_steps)
    q_enc = jax.vmap(lambda xi: model.encode(params, xi))(x)
    rngs = jax.random.split(jax.random.fold_in(elbo_rng, start), x.shape[0])
    enc, opt, lpx = jax.device_get(batched(q_enc, q_opt, x, rngs))
    parts["enc"].append(enc)
    parts["opt"].append(opt)
    parts["log_px"].append(lpx)
  enc, opt, lpx = (np.concatenate(parts[k]).astype(np.float64)
                   for k in ("enc", "opt", "log_px"))
  se = lambda v: float(np.std(v, ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
  return {
      "num_examples": len(enc), "optimisation_steps": num_steps,
      "elbo_encoder": float(enc.mean()), "elbo_optimised": float(opt.mean()),
      "log_px": float(lpx.mean()),
      "approximation_gap": float((lpx - opt).mean()), "approximation_gap_se": se(lpx - opt),
      "amortisation_gap": float((opt - enc).mean()), "amortisation_gap_se": se(opt - enc),
      "num_importance_samples": num_importance_samples,
  }


GRADIENT_CHUNK_FLOATS = 16 * 2 ** 20


def gradient_noise(model: LatentVariableModel, objective, params: Params, batch: jax.Array,
                   rng: jax.Array,
                   num_draws: int, step: int = 0) -> dict[str, float]:
  """How noisy the training gradient is at fixed parameters and a fixed batch:
  the loss's gradient over `num_draws` independent draws of z (and of the
  objective's other randomness). For the encoder and decoder parameters apart
  and together: total variance Σ_j Var[g_j], squared norm of the mean gradient
  ‖E g‖², and the mean per-parameter signal-to-noise ratio |E g_j| / std g_j
  (Rainforth et al. 2018). Both the variance (ddof=1) and ‖E g‖² are
  unbiased: ‖ḡ‖² - Σ_j s²_j / n, the mean of g_i·g_j over pairs of distinct
  draws (‖ḡ‖² alone exceeds ‖E g‖² by Σ_j Var[g_j] / n in expectation; the
  unbiased figure may come out below 0 where the noise swamps the signal).
  """
  step = jnp.asarray(step, jnp.int32)

  def grad(key):
    return jax.grad(lambda p: objective.loss(model, p, batch, key, step)[0])(params)

  # Draws vmapped in chunks whose largest activations (batch · k of them per
  # draw) stay within GRADIENT_CHUNK_FLOATS: bounded memory at any k.
  per_draw = len(batch) * objective.num_samples * model.floats_per_draw
  chunk = max(1, GRADIENT_CHUNK_FLOATS // per_draw)
  keys = jax.random.split(rng, num_draws)
  if chunk >= num_draws:  # one vmap (a loop is slow on XLA:CPU for conv models)
    grads = jax.jit(jax.vmap(grad))(keys)
  else:
    grads = jax.jit(lambda keys: jax.lax.map(grad, keys, batch_size=chunk))(keys)
  out = {}
  for part in ("encoder", "decoder", "all"):
    tree = grads if part == "all" else grads[part]
    g = np.concatenate([np.asarray(x, np.float64).reshape(num_draws, -1)
                        for x in jax.tree.leaves(tree)], axis=1)
    mean, var = g.mean(axis=0), g.var(axis=0, ddof=1)
    std = np.sqrt(var)
    snr = np.abs(mean[std > 0]) / std[std > 0]
    out[f"{part}_variance"] = float(var.sum())
    out[f"{part}_mean_sq_norm"] = float(np.sum(mean ** 2) - var.sum() / num_draws)
    out[f"{part}_snr"] = float(snr.mean()) if snr.size else math.inf
  out["num_draws"] = num_draws
  return out
