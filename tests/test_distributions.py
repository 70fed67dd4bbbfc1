"""Log-densities against scipy; the analytic KL against Monte Carlo."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from vae_jax import distributions as D

RNG = np.random.default_rng(0)


def test_bernoulli_matches_scipy_and_is_finite_at_extreme_logits():
  # |logit| <= 15 keeps scipy's log(1 - p) accurate to 1e-9 in float64.
  logits = np.array([-15.0, -3.0, -0.1, 0.0, 0.7, 4.0, 15.0], np.float32)
  x = np.array([1, 0, 1, 0, 1, 1, 0], np.float32)
  p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
  expected = stats.bernoulli.logpmf(x, p)
  got = np.asarray([D.bernoulli_log_prob(lg, xi, 0) for lg, xi in zip(logits, x)])
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  # Beyond, the wrong outcome has log-probability -|l| - log1p(e^-|l|) exactly.
  for big in (30.0, 100.0, 1e4):
    got = D.bernoulli_log_prob(jnp.array([big, -big]), jnp.array([0.0, 1.0]), 1)
    np.testing.assert_allclose(got, 2 * (-big - np.log1p(np.exp(-big))), rtol=1e-6)


def test_gaussian_matches_scipy():
  mean, log_var, x = RNG.normal(size=(3, 10))
  got = D.gaussian_log_prob(mean, log_var, x, 1)
  np.testing.assert_allclose(got, stats.norm.logpdf(x, mean, np.exp(0.5 * log_var)).sum(),
                             rtol=1e-5)


def test_binomial_matches_scipy():
  logits = RNG.normal(size=17).astype(np.float32) * 3
  x = np.arange(17).astype(np.float32)
  got = D.binomial_log_prob(logits, x, 16, 0)
  expected = stats.binom.logpmf(x, 16, 1.0 / (1.0 + np.exp(-logits.astype(np.float64))))
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mean,scale", [(7.3, 2.0), (0.2, 0.3), (15.9, 0.05), (-30.0, 1.0),
                                        (8.0, 40.0)])
def test_discretized_logistic_matches_scipy_and_normalises(mean, scale):
  levels = 17
  k = np.arange(levels, dtype=np.float64)
  cdf = lambda v: stats.logistic.cdf(v, loc=mean, scale=scale)
  sf = lambda v: stats.logistic.sf(v, loc=mean, scale=scale)
  # Differences of the CDF right of the mean, of the survival function left of
  # it: neither subtracts two numbers close to 1.
  interior = np.where(k > mean, sf(k - 0.5) - sf(k + 0.5), cdf(k + 0.5) - cdf(k - 0.5))
  expected = np.where(k == 0, cdf(0.5), np.where(k == levels - 1, sf(levels - 1.5),
                                                  interior))
  got = np.asarray(D.discretized_logistic_log_prob(
      jnp.float32(mean), jnp.float32(np.log(scale)), jnp.asarray(k, jnp.float32), levels, 0))
  assert np.all(np.isfinite(got))
  finite = expected > 1e-30  # where scipy's difference of CDFs still has digits
  np.testing.assert_allclose(got[finite], np.log(expected[finite]), rtol=2e-4, atol=2e-4)
  np.testing.assert_allclose(np.exp(got.astype(np.float64)).sum(), 1.0, atol=1e-5)


def test_discretized_logistic_far_tail_is_accurate():
  # P(k=8 | μ=0, s=0.5) ≈ e^{-(7.5)/0.5} (1 - e^{-2}); scipy's CDF difference underflows
  # to a few digits there, the closed form does not.
  got = D.discretized_logistic_log_prob(jnp.float32(0.0), jnp.float32(np.log(0.5)),
                                        jnp.float32(8.0), 256, 0)
  expected = -15.0 + np.log1p(-np.exp(-2.0)) - np.log1p(np.exp(-15.0)) - np.log1p(np.exp(-17))
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_diag_gaussian_log_prob_matches_scipy():
  mean, log_var, z = RNG.normal(size=(3, 5))
  q = D.DiagGaussian(jnp.asarray(mean), jnp.asarray(log_var))
  expected = stats.multivariate_normal.logpdf(z, mean, np.diag(np.exp(log_var)))
  np.testing.assert_allclose(q.log_prob(jnp.asarray(z)), expected, rtol=1e-5)
  np.testing.assert_allclose(D.standard_normal_log_prob(jnp.asarray(z)),
                             stats.multivariate_normal.logpdf(z, np.zeros(5)), rtol=1e-5)


def test_analytic_kl_matches_monte_carlo():
  """KL(q ‖ N(0, I)) against E_q[log q - log p] with n = 400,000 draws: the MC
  estimate's standard error is computed, and the two agree within 4 of them."""
  q = D.DiagGaussian(jnp.array([0.5, -1.0, 2.0]), jnp.array([-1.0, 0.3, 0.0]))
  z = q.sample(jax.random.key(0), 400_000)
  diffs = np.asarray(q.log_prob(z) - D.standard_normal_log_prob(z), np.float64)
  se = diffs.std() / np.sqrt(len(diffs))
  assert abs(diffs.mean() - float(q.kl_to_standard_normal())) < 4 * se
  per_dim = q.kl_to_standard_normal_per_dim()
  np.testing.assert_allclose(jnp.sum(per_dim), q.kl_to_standard_normal(), rtol=1e-6)


def test_sample_is_reparameterised():
  q = D.DiagGaussian(jnp.array([1.0, -2.0]), jnp.log(jnp.array([4.0, 0.25])))
  z = np.asarray(q.sample(jax.random.key(1), 200_000))
  np.testing.assert_allclose(z.mean(0), [1.0, -2.0], atol=0.02)
  np.testing.assert_allclose(z.std(0), [2.0, 0.5], rtol=0.01)
  grad = jax.grad(lambda m: jnp.sum(D.DiagGaussian(m, q.log_var).sample(
      jax.random.key(1), 3)))(q.mean)
  np.testing.assert_allclose(grad, [3.0, 3.0])  # dz/dμ = 1 for each of 3 draws
