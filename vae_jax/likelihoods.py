"""Observation models p(x|z): how decoder outputs become a log-probability.

Each likelihood says what array the decoder emits for an image
(`output_shape`), which learned global parameters it has, and how to turn the
decoder output into the per-example log p(x|z) (`log_prob_image`, exact, in
nats) and into a mean image in [0, 1] (`mean_image`). Most are independent
per pixel (`PerPixel`: `num_params` numbers per pixel and channel).
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from vae_jax import distributions

Params = Any


class PerPixel:
  """A likelihood independent across pixels and channels: the decoder emits
  `num_params` numbers for each, (..., *image_shape, num_params)."""

  def output_shape(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(image_shape) + (self.num_params,)

  def log_prob_image(self, raw: jax.Array, x: jax.Array, params: Params) -> jax.Array:
    """log p(x|raw) summed over the image; raw (..., *image_shape, P) -> (...).

    Computed on flat pixels, (..., D, P), summed over one axis: XLA's CPU
    reduction over (H, W, C) made this 2.4× the decoder's matmul time.
    """
    batch = raw.shape[:raw.ndim - x.ndim - 1]
    flat = raw.reshape(batch + (x.size, self.num_params))
    return self.log_prob(flat, x.reshape(-1), params, 1)

  def mean_image(self, raw: jax.Array, params: Params) -> jax.Array:
    return self.mean(raw, params)


@dataclasses.dataclass(frozen=True)
class Bernoulli(PerPixel):
  """Binary pixels, x ∈ {0, 1}, decoder emits logits."""
  num_params: int = 1

  def init_params(self) -> Params:
    return {}

  def log_prob(self, raw, x, params, event_ndim):
    return distributions.bernoulli_log_prob(raw[..., 0], x, event_ndim)

  def mean(self, raw, params):
    return jax.nn.sigmoid(raw[..., 0])


@dataclasses.dataclass(frozen=True)
class Gaussian(PerPixel):
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
class Binomial(PerPixel):
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
class DiscretizedLogistic(PerPixel):
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


@dataclasses.dataclass(frozen=True)
class DiscretizedMixLogistic:
  """Integer colour (or grey) pixels 0..L-1 under PixelCNN++'s discretised
  mixture of `num_mixtures` logistics with the linear RGB coupling (Salimans et
  al. 2017; `distributions.discretized_mix_logistic_log_prob`).

  Works on whole images: the decoder emits output_shape(image_shape) =
  (H, W, M (1 + 2C + C(C-1)/2)) numbers, C ∈ {1, 3}, read as PixelCNN++ lays
  them out, means and log-scales in units where the pixel range is [-1, 1].
  """
  num_levels: int
  num_mixtures: int = 10

  def output_shape(self, image_shape) -> tuple:
    height, width, channels = image_shape
    return (height, width,
            distributions.mix_logistic_num_params(self.num_mixtures, channels))

  def init_params(self) -> Params:
    return {}

  def _num_channels(self, raw) -> int:
    for c in (1, 3):
      if raw.shape[-1] == distributions.mix_logistic_num_params(self.num_mixtures, c):
        return c
    raise ValueError(f"{raw.shape[-1]} numbers per pixel fit no {self.num_mixtures}-component "
                     "mixture of logistics over 1 or 3 channels")

  def log_prob_image(self, raw, x, params):
    """Σ over the image of log p(pixel), shape raw.shape[:-3]; x of image_shape."""
    return distributions.discretized_mix_logistic_log_prob(raw, x, self.num_mixtures,
                                                           self.num_levels)

  def mean_image(self, raw, params):
    """The mixture mean of the pixel values / (L-1), (..., H, W, C) in [0, 1].

    Per component m, channel by channel, the exact mean of the discretised
    logistic (E k = Σ_{k=1}^{L-1} P(K >= k), edge bins included; O(L) per
    channel and component), with the coupling evaluated at the earlier
    channels' means under m; then Σ_m π_m. Exact for grey images and for red;
    for green and blue an approximation (E f(x_r) ≈ f(E x_r) for the nonlinear
    f = the discretised mean as a function of the coupled location), since the
    exact value needs a sum over L^2 (green) or L^3 (blue) values per pixel.
    """
    levels = self.num_levels
    p = distributions.mix_logistic_params(raw, self.num_mixtures, self._num_channels(raw))
    num_channels = p.means.shape[-2]
    # The lower edge of bin k on [-1, 1] is -1 + (2k - 1)/(L - 1).
    edge = lambda k: -1.0 + (2.0 * k - 1.0) / (levels - 1)
    earlier, channel_means = [], []
    for c in range(num_channels):
      mean = distributions.mix_logistic_coupled_mean(p, c, earlier)
      inv_scale = jnp.exp(-p.log_scales[..., c, :])
      body = lambda k, acc: acc + jax.nn.sigmoid((mean - edge(k)) * inv_scale)
      expected = jax.lax.fori_loop(1, levels, body, jnp.zeros_like(mean)) / (levels - 1)
      channel_means.append(jnp.sum(jnp.exp(p.log_weights) * expected, axis=-1))
      earlier.append(2.0 * expected - 1.0)
    return jnp.clip(jnp.stack(channel_means, axis=-1), 0.0, 1.0)

  def sample(self, raw, params, rng):
    """Ancestral draws, (..., H, W, C), the integers 0..L-1 as float32.

    Per pixel a component m ~ π, then channel by channel a logistic draw
    μ + s log(u / (1 - u)) (the inverse CDF) with μ coupled to the earlier
    channels' drawn (discretised) values, exactly as the density conditions
    on them, rounded to its bin and clipped to 0..L-1 (the edge bins hold the
    tails): an exact sample of the distribution log_prob_image scores.
    """
    levels = self.num_levels
    p = distributions.mix_logistic_params(raw, self.num_mixtures, self._num_channels(raw))
    num_channels = p.means.shape[-2]
    rng_component, rng_logistic = jax.random.split(rng)
    component = jax.random.categorical(rng_component, p.log_weights, axis=-1)[..., None]
    pick = lambda a: jnp.take_along_axis(a, component, axis=-1)[..., 0]  # (..., H, W)
    noise = jax.random.logistic(rng_logistic, p.means.shape[:-1], raw.dtype)
    earlier, values = [], []
    for c in range(num_channels):
      mean = pick(distributions.mix_logistic_coupled_mean(p, c, [e[..., None] for e in earlier]))
      draw = mean + jnp.exp(pick(p.log_scales[..., c, :])) * noise[..., c]
      k = jnp.clip(jnp.round((draw + 1.0) * (0.5 * (levels - 1))), 0, levels - 1)
      values.append(k)
      earlier.append(k * (2.0 / (levels - 1)) - 1.0)
    return jnp.stack(values, axis=-1).astype(jnp.float32)


# name -> constructor(config.model, num_levels).
LIKELIHOODS = {
    "bernoulli": lambda c, levels: Bernoulli(),
    "gaussian": lambda c, levels: Gaussian(c.gaussian_variance,
                                           math.log(c.gaussian_fixed_variance)),
    "binomial": lambda c, levels: Binomial(levels),
    "discretized_logistic": lambda c, levels: DiscretizedLogistic(levels),
    "discretized_mix_logistic": lambda c, levels: DiscretizedMixLogistic(levels,
                                                                         c.num_mixtures),
}
# Likelihoods of integer pixels 0..L-1, whose encoders see x / (L - 1).
INTEGER_PIXELS = ("binomial", "discretized_logistic", "discretized_mix_logistic")


def build(c, num_levels: int | None):
  """The likelihood `config.model` names, for pixels of `num_levels` levels."""
  return LIKELIHOODS[c.likelihood](c, num_levels)
