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


# The log-scale floor of the mixture of logistics, in units where the pixel
# range is [-1, 1] (PixelCNN++'s value). Below it little is left to gain: at
# s = e^-7 ≈ 9e-4 a bin of an 8-bit image (half-width 1/255 ≈ 3.9e-3) already
# holds σ(4.3) - σ(-4.3) ≈ 97% of a component centred on it (at most 0.03 nats
# a sub-pixel to win, less for coarser bins), while 1/s, the factor on every
# gradient through the standardised bin edges, grows without bound as the
# scale shrinks and the loss surface of a collapsing component turns into a
# cliff. Below the floor the log-scale gets no gradient.
MIX_LOGISTIC_MIN_LOG_SCALE = -7.0


class MixLogisticParams(NamedTuple):
  """A decoder output split into the parameters of a mixture of logistics.

  log_weights (..., M): log π_m (log-softmax of the logits); means and
  log_scales (..., C, M) (log-scales floored); coeffs (..., C(C-1)/2, M): the
  tanh-squashed couplings of the pairs (g|r, b|r, b|g) in that order.
  """
  log_weights: jax.Array
  means: jax.Array
  log_scales: jax.Array
  coeffs: jax.Array


def mix_logistic_num_params(num_mixtures: int, num_channels: int) -> int:
  """K = M (1 + 2C + C(C-1)/2): 3M for grey, 10M for RGB."""
  if num_channels not in (1, 3):
    raise ValueError(f"mixture of logistics: 1 or 3 channels, not {num_channels}")
  c = num_channels
  return num_mixtures * (1 + 2 * c + c * (c - 1) // 2)


def mix_logistic_params(raw: jax.Array, num_mixtures: int, num_channels: int
                        ) -> MixLogisticParams:
  """Split raw (..., K) as PixelCNN++ does: the M logits, then per channel c
  the M means, the M log-scales and (for C = 3) M coefficients, where channel
  c's coefficient slot holds c0 (g|r), c1 (b|r), c2 (b|g) for c = 0, 1, 2."""
  m, c = num_mixtures, num_channels
  k = mix_logistic_num_params(m, c)
  if raw.shape[-1] != k:
    raise ValueError(f"mixture of logistics with {m} components and {c} channels needs "
                     f"{k} numbers per pixel, got {raw.shape[-1]}")
  log_weights = jax.nn.log_softmax(raw[..., :m], axis=-1)
  rest = raw[..., m:].reshape(raw.shape[:-1] + (c, (k - m) // c))
  means = rest[..., :m]
  log_scales = jnp.maximum(rest[..., m:2 * m], MIX_LOGISTIC_MIN_LOG_SCALE)
  coeffs = jnp.tanh(rest[..., 2 * m:3 * m]) if c == 3 else rest[..., :0, :m]
  return MixLogisticParams(log_weights, means, log_scales, coeffs)


def mix_logistic_coupled_mean(params: MixLogisticParams, channel: int,
                              earlier: list[jax.Array]) -> jax.Array:
  """The mean of `channel` per component, (..., M), given the earlier channels'
  values on [-1, 1] (each broadcasting against (..., M)): μ_g + c0 x_r, or
  μ_b + c1 x_r + c2 x_g."""
  mean = params.means[..., channel, :]
  pair = channel * (channel - 1) // 2  # pairs (c, j) for j < c, c ascending
  for j in range(channel):
    mean = mean + params.coeffs[..., pair + j, :] * earlier[j]
  return mean


def _logistic_bin_log_prob(k: jax.Array, x: jax.Array, mean: jax.Array, log_scale: jax.Array,
                           num_bins: int) -> jax.Array:
  """log P(bin k) of Logistic(mean, e^log_scale) on [-1, 1], x the centre of bin
  k, the edge bins taking the tails. With a, b the standardised upper and lower
  edges, σ(a) - σ(b) = σ(a) σ(-b) (1 - e^{-d}) with d = a - b = 2h/s computed
  from the scale itself (not as a difference of two large numbers), and
  log(1 - e^{-d}) = log d - d/2 + O(d²) when d is tiny (a huge scale, where
  e^{-log_scale} may underflow to 0)."""
  half = 1.0 / (num_bins - 1)
  inv_scale = jnp.exp(-log_scale)
  upper = (x + half - mean) * inv_scale
  lower = (x - half - mean) * inv_scale
  d = 2.0 * half * inv_scale
  small = d < 1e-6
  log1m_exp = jnp.where(small, math.log(2.0 * half) - log_scale - 0.5 * d,
                        jnp.log(-jnp.expm1(-jnp.where(small, 1.0, d))))
  interior = jax.nn.log_sigmoid(upper) + jax.nn.log_sigmoid(-lower) + log1m_exp
  return jnp.where(k <= 0, jax.nn.log_sigmoid(upper),
                   jnp.where(k >= num_bins - 1, jax.nn.log_sigmoid(-lower), interior))


def discretized_mix_logistic_log_prob(raw: jax.Array, x: jax.Array, num_mixtures: int,
                                      num_bins: int) -> jax.Array:
  """log p(x) of an image under PixelCNN++'s discretised mixture of logistics.

  Salimans, Karpathy, Chen & Kingma (2017), "PixelCNN++: improving the
  PixelCNN with discretized logistic mixture likelihood and other
  modifications", ICLR, section 2.1-2.2, with its parameter layout (see
  `mix_logistic_params`) and its units: pixel value k ∈ {0..L-1} sits at the
  centre x̃ = 2k/(L-1) - 1 of a bin of half-width h = 1/(L-1) on [-1, 1];
  means and log-scales are in these units. Per pixel, with C ∈ {1, 3}
  channels, M components, π = softmax(logits):

    p(x) = Σ_m π_m Π_c P(k_c | μ_{m,c}(x̃_<c), s_{m,c}),
    μ_{m,r} = μ_r,  μ_{m,g} = μ_g + c0 x̃_r,  μ_{m,b} = μ_b + c1 x̃_r + c2 x̃_g,

  with c0, c1, c2 = tanh of the raw coefficients, s = exp(max(log_scale, -7)),
  and P(k | μ, s) = σ((x̃+h-μ)/s) - σ((x̃-h-μ)/s) for 0 < k < L-1, P(0) =
  σ((x̃+h-μ)/s), P(L-1) = 1 - σ((x̃-h-μ)/s): an exact distribution over the
  L^C values of a pixel. The in-between bins use σ(a) - σ(b) = σ(a) σ(-b)
  (1 - e^{b-a}) in log space, accurate however far in a tail the bin is
  (PixelCNN++'s fallback to the density at the bin centre is not needed).
  The mixture is over the joint of a pixel's channels; pixels independent.

  raw: (..., H, W, K), K = M (1 + 2C + C(C-1)/2); x: (H, W, C) (or
  broadcasting against raw's leading axes) holding the integers 0..L-1 as
  floats. Returns Σ_{h,w} log p(x_hw), shape raw.shape[:-3].
  """
  num_channels = x.shape[-1]
  params = mix_logistic_params(raw, num_mixtures, num_channels)
  x = jnp.asarray(x, raw.dtype)
  x_unit = x * (2.0 / (num_bins - 1)) - 1.0  # (..., H, W, C) on [-1, 1]
  earlier = []
  log_p = params.log_weights  # (..., H, W, M)
  for c in range(num_channels):
    mean = mix_logistic_coupled_mean(params, c, earlier)
    log_p = log_p + _logistic_bin_log_prob(x[..., c, None], x_unit[..., c, None], mean,
                                           params.log_scales[..., c, :], num_bins)
    earlier.append(x_unit[..., c, None])
  return jnp.sum(jax.nn.logsumexp(log_p, axis=-1), axis=(-2, -1))
