"""Observation models p(x|z): how decoder outputs become a log-probability.

Each likelihood says how many numbers per pixel the decoder emits, which
learned global parameters it has, and how to turn the decoder output into
the per-example log p(x|z) (exact, in nats) and into a mean image in [0, 1].
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from vae_jax import distributions

Params = Any


@dataclasses.dataclass(frozen=True)
class Bernoulli:
  """Binary pixels, x ∈ {0, 1}, decoder emits logits."""
  num_params: int = 1

  def init_params(self) -> Params:
    return {}

  def log_prob(self, raw, x, params, event_ndim):
    return distributions.bernoulli_log_prob(raw[..., 0], x, event_ndim)

  def mean(self, raw, params):
    return jax.nn.sigmoid(raw[..., 0])


@dataclasses.dataclass(frozen=True)
class Gaussian:
  """Continuous pixels (dequantised to [0, 1) when the data are discrete).

  variance: 'fixed' (exp(fixed_log_var) for every pixel), 'scalar' (one learned
  σ² shared by all pixels; the probabilistic-PCA model) or 'per_pixel' (the
  decoder emits a log-variance per pixel).
  """
  variance: str = "scalar"
  fixed_log_var: float = 0.0

  @property
  def num_params(self) -> int:
    return 2 if self.variance == "per_pixel" else 1

  def init_params(self) -> Params:
    return {"log_var": jnp.zeros(())} if self.variance == "scalar" else {}

  def _log_var(self, raw, params):
    if self.variance == "per_pixel":
      return raw[..., 1]
    if self.variance == "scalar":
      return params["log_var"]
    return jnp.asarray(self.fixed_log_var, raw.dtype)

  def log_prob(self, raw, x, params, event_ndim):
    return distributions.gaussian_log_prob(raw[..., 0], self._log_var(raw, params), x,
                                           event_ndim)

  def mean(self, raw, params):
    return jnp.clip(raw[..., 0], 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Binomial:
  """Integer pixels 0..L-1 as Binomial(L-1, p) counts (e.g. the 0..16 digits)."""
  num_levels: int
  num_params: int = 1

  def init_params(self) -> Params:
    return {}

  def log_prob(self, raw, x, params, event_ndim):
    return distributions.binomial_log_prob(raw[..., 0], x, self.num_levels - 1, event_ndim)

  def mean(self, raw, params):
    return jax.nn.sigmoid(raw[..., 0])


@dataclasses.dataclass(frozen=True)
class DiscretizedLogistic:
  """Integer pixels 0..L-1, a logistic discretised to L bins.

  The decoder emits the mean and log-scale in units of the pixel range, so the
  same network initialisation suits L = 17 and L = 256; the log-scale is
  floored at -10 (a scale of 5e-5 of the range) to keep gradients finite.
  """
  num_levels: int
  num_params: int = 2

  def init_params(self) -> Params:
    return {}

  def _loc_scale(self, raw):
    span = float(self.num_levels - 1)
    loc = span * (0.5 + raw[..., 0])
    log_scale = jnp.maximum(raw[..., 1], -10.0) + jnp.log(span)
    return loc, log_scale

  def log_prob(self, raw, x, params, event_ndim):
    loc, log_scale = self._loc_scale(raw)
    return distributions.discretized_logistic_log_prob(loc, log_scale, x, self.num_levels,
                                                       event_ndim)

  def mean(self, raw, params):
    return jnp.clip(0.5 + raw[..., 0], 0.0, 1.0)


# name -> constructor(num_levels, gaussian_variance, gaussian_fixed_log_var).
LIKELIHOODS = {
    "bernoulli": lambda levels, var, log_var: Bernoulli(),
    "gaussian": lambda levels, var, log_var: Gaussian(var, log_var),
    "binomial": lambda levels, var, log_var: Binomial(levels),
    "discretized_logistic": lambda levels, var, log_var: DiscretizedLogistic(levels),
}
