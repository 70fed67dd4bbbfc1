"""Per-example log-densities, reparameterised sampling and the Gaussian KL.

Every `*_log_prob` returns the log-density of ONE example, summed over all its
dimensions, with its exact normaliser: the numbers are real log-probabilities
(or log-densities) in nats. Inputs broadcast, so a leading sample axis works.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

_LOG_2PI = math.log(2.0 * math.pi)


def _sum_event(x: jax.Array, event_ndim: int) -> jax.Array:
  return jnp.sum(x, axis=tuple(range(-event_ndim, 0))) if event_ndim else x


def bernoulli_log_prob(logits: jax.Array, x: jax.Array, event_ndim: int) -> jax.Array:
  """log Bern(x | sigmoid(logits)) = x log σ(l) + (1 - x) log σ(-l) = x l - softplus(l).

  With softplus(l) = max(l, 0) + log1p(exp(-|l|)): finite for every finite
  logit (no log(0)), one exp and one log1p per pixel. On a CPU this term is a
  visible part of a step: two log σ's, or jax.nn.softplus (logaddexp with its
  inf/nan cases), cost 2-3× as much over a (samples, pixels) array.
  """
  lp = x * logits - (jnp.maximum(logits, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(logits))))
  return _sum_event(lp, event_ndim)


def gaussian_log_prob(mean: jax.Array, log_var: jax.Array, x: jax.Array,
                      event_ndim: int) -> jax.Array:
  """log N(x | mean, exp(log_var)), elementwise independent."""
  lp = -0.5 * (_LOG_2PI + log_var + jnp.square(x - mean) * jnp.exp(-log_var))
  return _sum_event(lp, event_ndim)


def binomial_log_prob(logits: jax.Array, x: jax.Array, total_count: int,
                      event_ndim: int) -> jax.Array:
  """log Binomial(x | n, sigmoid(logits)) with x an integer in 0..n."""
  n = float(total_count)
  log_coef = gammaln(n + 1.0) - gammaln(x + 1.0) - gammaln(n - x + 1.0)
  lp = log_coef + x * jax.nn.log_sigmoid(logits) + (n - x) * jax.nn.log_sigmoid(-logits)
  return _sum_event(lp, event_ndim)


def discretized_logistic_log_prob(mean: jax.Array, log_scale: jax.Array, x: jax.Array,
                                  num_bins: int, event_ndim: int) -> jax.Array:
  """Logistic(mean, scale) discretised to the integers 0..num_bins-1.

  P(k) = σ((k + ½ - μ)/s) - σ((k - ½ - μ)/s), and the two edge bins take the
  tails (P(0) = σ((½ - μ)/s), P(L-1) = 1 - σ((L - 3/2 - μ)/s)), so the mass
  sums to one exactly (Salimans et al. 2017, PixelCNN++). With a = upper and
  b = lower standardised edge, σ(a) - σ(b) = σ(a) σ(-b) (1 - e^{b-a}), whose
  log is finite and accurate wherever the bin is, also far in a tail.
  """
  inv_scale = jnp.exp(-log_scale)
  upper = (x + 0.5 - mean) * inv_scale
  lower = (x - 0.5 - mean) * inv_scale
  interior = (jax.nn.log_sigmoid(upper) + jax.nn.log_sigmoid(-lower)
              + jnp.log(-jnp.expm1(lower - upper)))
  lp = jnp.where(x <= 0, jax.nn.log_sigmoid(upper),
                 jnp.where(x >= num_bins - 1, jax.nn.log_sigmoid(-lower), interior))
  return _sum_event(lp, event_ndim)


class DiagGaussian(NamedTuple):
  """A diagonal Gaussian over a latent vector: N(mean, diag(exp(log_var)))."""
  mean: jax.Array
  log_var: jax.Array

  def sample(self, rng: jax.Array, num_samples: int) -> jax.Array:
    """Reparameterised draws z = μ + σ ε, shape (num_samples, dim)."""
    eps = jax.random.normal(rng, (num_samples,) + self.mean.shape, self.mean.dtype)
    return self.mean + jnp.exp(0.5 * self.log_var) * eps

  def log_prob(self, z: jax.Array) -> jax.Array:
    return gaussian_log_prob(self.mean, self.log_var, z, event_ndim=1)

  def kl_to_standard_normal_per_dim(self) -> jax.Array:
    """KL(N(μ, σ²) ‖ N(0, 1)) per dimension = ½ (μ² + σ² - 1 - log σ²)."""
    return 0.5 * (jnp.square(self.mean) + jnp.exp(self.log_var) - 1.0 - self.log_var)

  def kl_to_standard_normal(self) -> jax.Array:
    return jnp.sum(self.kl_to_standard_normal_per_dim(), axis=-1)

  def kl_per_unit(self, other: "DiagGaussian") -> jax.Array:
    """KL(self ‖ other) per unit = ½ (log σ_p² - log σ_q² + (σ_q² + (μ_q - μ_p)²) / σ_p² - 1)."""
    return 0.5 * (other.log_var - self.log_var - 1.0
                  + (jnp.exp(self.log_var) + jnp.square(self.mean - other.mean))
                  * jnp.exp(-other.log_var))

  def log_prob_per_unit(self, z: jax.Array) -> jax.Array:
    return gaussian_log_prob(self.mean, self.log_var, z, event_ndim=0)


def standard_normal_log_prob(z: jax.Array) -> jax.Array:
  """log N(z | 0, I) of a latent vector (last axis)."""
  return -0.5 * jnp.sum(_LOG_2PI + jnp.square(z), axis=-1)
