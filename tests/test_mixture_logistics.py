"""PixelCNN++'s discretised mixture of logistics: against a float64 numpy
reference written from the paper, exactly normalised over all pixel values
(also far in the tails), finite where it must be, and sampled as it scores."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from vae_jax import distributions as D
from vae_jax import likelihoods

RNG = np.random.default_rng(0)


def reference_log_prob(raw, x, num_mixtures, levels):
  """Σ_pixels log Σ_m π_m Π_c P_m(x_c | x_<c), loops and float64 throughout.

  Layout as PixelCNN++: M logits, then per channel c its M means, M
  log-scales and (RGB) M coefficients; channel c's coefficient slot is c0
  (g|r), c1 (b|r), c2 (b|g) for c = 0, 1, 2. Pixel k sits at 2k/(L-1) - 1.
  """
  raw, x = np.asarray(raw, np.float64), np.asarray(x, np.float64)
  m_count, channels = num_mixtures, x.shape[-1]
  out = np.zeros(raw.shape[:-3])
  for idx in np.ndindex(*raw.shape[:-1]):
    r = raw[idx]
    k = x[idx[-2:]]
    per_channel = r[m_count:].reshape(channels, -1)
    log_pi = r[:m_count] - special.logsumexp(r[:m_count])
    xt = 2.0 * k / (levels - 1) - 1.0
    terms = []
    for m in range(m_count):
      lp = log_pi[m]
      for c in range(channels):
        mu = per_channel[c, m]
        if c == 1:
          mu += np.tanh(per_channel[0, 2 * m_count + m]) * xt[0]
        if c == 2:
          mu += (np.tanh(per_channel[1, 2 * m_count + m]) * xt[0]
                 + np.tanh(per_channel[2, 2 * m_count + m]) * xt[1])
        s = np.exp(max(per_channel[c, m_count + m], -7.0))
        hi = (xt[c] + 1.0 / (levels - 1) - mu) / s
        lo = (xt[c] - 1.0 / (levels - 1) - mu) / s
        if k[c] == 0:
          p = special.expit(hi)
        elif k[c] == levels - 1:
          p = special.expit(-lo)
        elif lo > 0:  # the upper tail: 1 - σ(·) differences, no cancellation
          p = special.expit(-lo) - special.expit(-hi)
        else:
          p = special.expit(hi) - special.expit(lo)
        with np.errstate(divide="ignore"):  # a component may underflow: -inf
          lp += np.log(p)
      terms.append(lp)
    out[idx[:-2]] += special.logsumexp(terms)
  return out


def build_raw(logits, means, log_scales, coeffs=None):
  """raw (..., K) in PixelCNN++'s layout from logits (..., M), means and
  log-scales (..., C, M) and, for RGB, the coefficient slots (..., 3, M)."""
  parts = [np.asarray(means), np.asarray(log_scales)]
  if coeffs is not None:
    parts.append(np.asarray(coeffs))
  per_channel = np.concatenate(parts, axis=-1)
  per_channel = per_channel.reshape(per_channel.shape[:-2] + (-1,))
  return np.concatenate([np.asarray(logits), per_channel], axis=-1).astype(np.float32)


def random_raw(shape, num_mixtures, channels, mean_scale=0.7, coupling=1.5):
  """Moderate random decoder outputs; some log-scales below the floor of -7."""
  size = shape + (channels, num_mixtures)
  return build_raw(RNG.normal(size=shape + (num_mixtures,)) * 2,
                   RNG.normal(size=size) * mean_scale, RNG.normal(size=size) * 1.5 - 3.0,
                   RNG.normal(size=size) * coupling if channels == 3 else None)


one_pixel_raw = build_raw


@functools.partial(jax.jit, static_argnums=(2, 3))
def pixel_log_probs(raw, values, num_mixtures, levels):
  """log p of each of values (N, C) for the one pixel raw (K,): (N,)."""
  one = lambda v: D.discretized_mix_logistic_log_prob(raw[None, None], v[None, None],
                                                      num_mixtures, levels)
  return jax.vmap(one)(values)


@pytest.mark.parametrize("channels", [1, 3])
def test_matches_numpy_reference(channels):
  m_count, levels = 3, 256
  raw = random_raw((2, 3, 4), m_count, channels)
  x = RNG.integers(0, levels, size=(3, 4, channels)).astype(np.float32)
  x[0, 0], x[0, 1] = 0, levels - 1  # the edge bins too
  got = jax.jit(D.discretized_mix_logistic_log_prob, static_argnums=(2, 3))(
      jnp.asarray(raw), jnp.asarray(x), m_count, levels)
  assert got.shape == (2,)
  np.testing.assert_allclose(got, reference_log_prob(raw, x, m_count, levels), rtol=1e-5,
                             atol=1e-4)
  lik = likelihoods.DiscretizedMixLogistic(levels, m_count)
  assert lik.output_shape((3, 4, channels)) == raw.shape[1:] and lik.init_params() == {}
  np.testing.assert_allclose(lik.log_prob_image(raw, x, {}), got, rtol=1e-6)


def test_far_tail_interior_bin_is_accurate():
  """An interior bin far from the mean, in units of the scale: log(σ(a) - σ(b))
  is checked against float64 log σ(a) + log1p(-e^{log σ(b) - log σ(a)}); the
  last case is a wide bin (a - b ≈ 4e-4) at a ≈ -10, where a - b taken as the
  difference of the two edges would lose three digits in float32."""
  levels = 256
  for mean, log_scale, k in [(30.0, -7.0, 100.0), (-3.0, -4.0, 200.0), (0.5, -6.0, 1.0),
                             (-200.0, 3.0, 128.0)]:
    raw = one_pixel_raw([0.0], [[mean]], [[log_scale]])
    got = float(pixel_log_probs(jnp.asarray(raw), jnp.array([[k]]), 1, levels)[0])
    xt, s = 2.0 * k / (levels - 1) - 1.0, np.exp(log_scale)
    a, b = (xt + 1 / (levels - 1) - mean) / s, (xt - 1 / (levels - 1) - mean) / s
    if a > 0:  # the upper tail: σ(a) - σ(b) = σ(-b) - σ(-a)
      a, b = -b, -a
    log_sa, log_sb = -np.logaddexp(0.0, -a), -np.logaddexp(0.0, -b)
    expected = log_sa + np.log1p(-np.exp(log_sb - log_sa))
    assert expected < -15
    np.testing.assert_allclose(got, expected, rtol=1e-5)


EXTREME_MEANS = [-1e3, -30.0, -1.5, -1.0, -0.2, 0.0, 0.999, 1.0, 4.0, 30.0, 1e3]
EXTREME_LOG_SCALES = [-20.0, -7.0, -5.0, -2.0, 0.0, 3.0, 10.0, 100.0]


def test_grey_normalises_over_all_256_values_also_in_the_tails():
  """Σ_k p(k) = 1 (to 1e-4) for 40 random 3-component pixels whose means and
  log-scales are drawn from extreme values (far beyond either end, tiny scales
  below the floor and scales so huge e^{-log s} underflows)."""
  levels, m_count = 256, 3
  values = jnp.arange(levels, dtype=jnp.float32)[:, None]
  probs = []
  for _ in range(40):
    raw = one_pixel_raw(RNG.normal(size=m_count) * 3,
                        RNG.choice(EXTREME_MEANS, size=(1, m_count)),
                        RNG.choice(EXTREME_LOG_SCALES, size=(1, m_count)))
    lp = pixel_log_probs(jnp.asarray(raw), values, m_count, levels)
    assert np.all(np.isfinite(lp)) or np.all(np.isfinite(lp) | (lp == -np.inf))
    probs.append(np.exp(np.asarray(lp, np.float64)).sum())
  np.testing.assert_allclose(probs, 1.0, atol=1e-4)


@jax.jit
def _rgb_grid_total(raw):
  """Σ over all 256^3 values of one RGB pixel of p, one red value at a time."""
  gb = jnp.stack(jnp.meshgrid(jnp.arange(256.0), jnp.arange(256.0), indexing="ij"), -1)
  gb = gb.reshape(-1, 2)

  def for_red(red):
    values = jnp.concatenate([jnp.full((gb.shape[0], 1), red), gb], axis=1)
    return jnp.sum(jnp.exp(pixel_log_probs(raw, values, 2, 256)))

  return jax.lax.map(for_red, jnp.arange(256.0))


def test_rgb_normalises_over_the_full_256_cubed_grid():
  """The joint of one RGB pixel summed over all 256^3 = 16.7M values is 1 (to
  1e-4), 2 coupled components: one moderate, one with far-off means, a floored
  and a huge scale and saturated coefficients."""
  raw = one_pixel_raw([0.3, -0.4], [[0.1, 30.0], [0.4, -5.0], [-0.9, 0.999]],
                      [[-3.0, -20.0], [-4.0, 100.0], [-2.5, -6.5]],
                      [[1.5, 50.0], [-2.0, -50.0], [0.8, 50.0]])
  per_red = np.asarray(_rgb_grid_total(jnp.asarray(raw)), np.float64)
  np.testing.assert_allclose(per_red.sum(), 1.0, atol=1e-4)


def test_rgb_normalises_exactly_for_few_levels():
  """With L = 4 the whole 4^3 grid: Σ p = 1 for 30 random RGB pixels."""
  levels, m_count = 4, 3
  grid = np.stack(np.meshgrid(*[np.arange(levels)] * 3, indexing="ij"), -1).reshape(-1, 3)
  for _ in range(30):
    raw = random_raw((), m_count, 3, mean_scale=2.0)
    lp = pixel_log_probs(jnp.asarray(raw), jnp.asarray(grid, jnp.float32), m_count, levels)
    np.testing.assert_allclose(np.exp(np.asarray(lp, np.float64)).sum(), 1.0, atol=1e-5)


@pytest.mark.parametrize("channels", [1, 3])
def test_finite_log_prob_and_gradients_at_extremes(channels):
  """x at 0 and 255 with means far on the other side, floored and huge scales."""
  m_count, levels = 2, 256
  k = D.mix_logistic_num_params(m_count, channels)
  shape = (4, 2, 2, channels, m_count)
  means = np.broadcast_to(np.array([[1e3, -1e3], [-1e3, 30.0], [-30.0, 30.0], [1e3, -1e3]])
                          [:, None, None, None], shape)
  log_scales = np.broadcast_to(np.array([[-20.0, 100.0]] * 3 + [[-7.0, 88.0]])
                               [:, None, None, None], shape)
  coeffs = np.full(shape, 40.0) if channels == 3 else None  # saturated couplings
  raw = build_raw(np.broadcast_to([50.0, -50.0], shape[:3] + (m_count,)), means, log_scales,
                  coeffs)
  assert raw.shape[-1] == k
  x = np.array([[0.0, 255.0], [255.0, 0.0]], np.float32)[..., None].repeat(channels, -1)
  f = lambda r: D.discretized_mix_logistic_log_prob(r, jnp.asarray(x), m_count, levels)
  total = lambda r: (jnp.sum(f(r)), f(r))
  (_, value), grad = jax.jit(jax.value_and_grad(total, has_aux=True))(jnp.asarray(raw))
  assert value.shape == (4,) and np.all(np.isfinite(value))
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def _chi_square_p_value(counts, probs):
  """Pearson's test, the cells expecting fewer than 5 draws pooled into one."""
  expected = counts.sum() * probs
  big = expected >= 5
  observed = np.append(counts[big], counts[~big].sum())
  expected = np.append(expected[big], expected[~big].sum())
  statistic = np.sum((observed - expected) ** 2 / np.maximum(expected, 1e-12))
  return stats.chi2.sf(statistic, len(observed) - 1)


def _sample_many(lik, raw, n, seed):
  batch = jnp.broadcast_to(jnp.asarray(raw), (n, 1, 1, raw.shape[-1]))
  draws = np.asarray(lik.sample(batch, {}, jax.random.PRNGKey(seed)))
  assert draws.shape[:3] == (n, 1, 1) and draws.dtype == np.float32
  return draws[:, 0, 0].astype(int)


def test_grey_samples_follow_the_density():
  """20000 draws of one 2-component grey pixel (one component at the top
  edge, so the tail bin matters): Pearson χ² against exp(log p), p > 1e-3."""
  levels, n = 256, 20000
  raw = one_pixel_raw([0.4, -0.2], [[-0.3, 0.97]], [[-2.5, -3.5]])
  lik = likelihoods.DiscretizedMixLogistic(levels, 2)
  draws = _sample_many(lik, raw, n, 0)[:, 0]
  assert draws.min() >= 0 and draws.max() <= levels - 1 and np.sum(draws == 255) > 1000
  probs = np.exp(np.asarray(pixel_log_probs(
      jnp.asarray(raw), jnp.arange(levels, dtype=jnp.float32)[:, None], 2, levels), np.float64))
  counts = np.bincount(draws, minlength=levels)
  assert _chi_square_p_value(counts, probs) > 1e-3
  assert np.max(np.abs(counts / n - probs)) < 0.01  # the histogram's max abs error


def test_rgb_samples_follow_the_coupled_density():
  """20000 draws of one coupled 2-component RGB pixel with L = 8 (512
  cells): Pearson χ² against the joint exp(log p), p > 1e-3."""
  levels, n = 8, 20000
  raw = one_pixel_raw([0.2, -0.3], [[0.1, -0.6], [0.3, 0.2], [-0.4, 0.5]],
                      [[-1.0, -1.5], [-1.5, -0.8], [-1.2, -2.0]],
                      [[1.5, -1.0], [-1.2, 0.8], [1.0, 2.0]])
  lik = likelihoods.DiscretizedMixLogistic(levels, 2)
  draws = _sample_many(lik, raw, n, 1)
  cells = (draws[:, 0] * levels + draws[:, 1]) * levels + draws[:, 2]
  grid = np.stack(np.meshgrid(*[np.arange(levels)] * 3, indexing="ij"), -1).reshape(-1, 3)
  probs = np.exp(np.asarray(pixel_log_probs(
      jnp.asarray(raw), jnp.asarray(grid, jnp.float32), 2, levels), np.float64))
  assert _chi_square_p_value(np.bincount(cells, minlength=levels ** 3), probs) > 1e-3


def test_mean_image_shape_range_and_exact_where_it_claims():
  """(..., H, W, C) in [0, 1]; for grey pixels, and for RGB with zero
  coupling, exactly Σ_k k p(k) / (L-1) of the density's own marginals."""
  m_count = 3
  for levels, channels, zero_coupling in [(256, 1, False), (256, 3, False), (6, 3, True)]:
    lik = likelihoods.DiscretizedMixLogistic(levels, m_count)
    raw = random_raw((2, 3, 2), m_count, channels, mean_scale=1.5,
                     coupling=0.0 if zero_coupling else 1.5)
    raw[0, 0, 0, m_count:2 * m_count] = 1e3  # red (or grey) far above the range
    mean = np.asarray(lik.mean_image(jnp.asarray(raw), {}))
    assert mean.shape == (2, 3, 2, channels)
    assert np.all(mean >= 0.0) and np.all(mean <= 1.0)
    if channels == 3 and not zero_coupling:
      continue  # green and blue are approximate (the docstring's plug-in)
    # The exact mean of one pixel from its joint distribution over all values.
    grid = np.stack(np.meshgrid(*[np.arange(levels)] * channels, indexing="ij"), -1)
    grid = grid.reshape(-1, channels)
    for idx in [(0, 0, 0), (1, 2, 1)]:
      probs = np.exp(np.asarray(pixel_log_probs(
          jnp.asarray(raw[idx]), jnp.asarray(grid, jnp.float32), m_count, levels), np.float64))
      np.testing.assert_allclose(mean[idx], probs @ grid / (levels - 1), atol=2e-5)


def test_rejects_a_wrong_number_of_outputs():
  with pytest.raises(ValueError, match="needs 30"):
    D.discretized_mix_logistic_log_prob(jnp.zeros((2, 2, 29)), jnp.zeros((2, 2, 3)), 3, 256)
  with pytest.raises(ValueError, match="1 or 3"):
    likelihoods.DiscretizedMixLogistic(256).output_shape((4, 4, 2))
