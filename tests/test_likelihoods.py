"""Observation models as the model uses them: normalised, and scipy-exact."""

import jax.numpy as jnp
import numpy as np
from scipy import stats

from vae_jax import likelihoods

RNG = np.random.default_rng(0)


def test_gaussian_variance_options_match_scipy():
  raw = RNG.normal(size=(4, 3, 2)).astype(np.float32)
  x = RNG.random((4, 3)).astype(np.float32)
  fixed = likelihoods.Gaussian("fixed", np.log(0.5))
  np.testing.assert_allclose(fixed.log_prob(raw[..., :1], x, {}, 2),
                             stats.norm.logpdf(x, raw[..., 0], np.sqrt(0.5)).sum(), rtol=1e-5)
  scalar = likelihoods.Gaussian("scalar")
  params = {"log_var": jnp.float32(-1.3)}
  np.testing.assert_allclose(scalar.log_prob(raw[..., :1], x, params, 2),
                             stats.norm.logpdf(x, raw[..., 0], np.exp(-0.65)).sum(), rtol=1e-5)
  per_pixel = likelihoods.Gaussian("per_pixel")
  assert per_pixel.num_params == 2 and scalar.init_params()["log_var"].shape == ()
  np.testing.assert_allclose(per_pixel.log_prob(raw, x, {}, 2), stats.norm.logpdf(
      x, raw[..., 0], np.exp(0.5 * raw[..., 1])).sum(), rtol=1e-5)


def test_discrete_likelihoods_normalise_over_all_levels():
  """For any decoder output, Σ_k p(x = k) = 1 per pixel (with the model's own
  mapping from raw outputs to location and scale)."""
  for lik in (likelihoods.DiscretizedLogistic(17), likelihoods.Binomial(17),
              likelihoods.DiscretizedLogistic(256)):
    levels = lik.num_levels
    raw = RNG.normal(size=(5, lik.num_params)).astype(np.float32) * 2
    k = jnp.arange(levels, dtype=jnp.float32)[:, None]  # (levels, 5 pixels)
    logp = lik.log_prob(jnp.broadcast_to(raw, (levels,) + raw.shape), k, {}, 0)
    np.testing.assert_allclose(np.exp(np.asarray(logp, np.float64)).sum(0), 1.0, atol=1e-4)


def test_bernoulli_mean_and_registry():
  lik = likelihoods.Bernoulli()
  np.testing.assert_allclose(lik.mean(jnp.zeros((2, 1)), {}), [0.5, 0.5])
  from vae_jax import config as config_lib  # the names the config accepts, all built
  assert set(likelihoods.LIKELIHOODS) == set(config_lib.LIKELIHOODS)
