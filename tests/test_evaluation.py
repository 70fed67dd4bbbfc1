"""The streaming importance-sampled estimator and its errors, on closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp

from vae_jax import evaluation, objectives

from linear_gaussian import LinearGaussian


@pytest.fixture(scope="module")
def lg():
  return LinearGaussian()


def _estimates(lg, params, x, seed, k, chunk, elbo_samples=4):
  return evaluation.example_estimates(
      lg.vae, params, jnp.asarray(x, jnp.float32), jax.random.key(seed),
      elbo_samples=elbo_samples, analytic_kl=True, num_importance_samples=k, chunk=chunk)


def test_exact_posterior_gives_log_px_with_zero_mc_error(lg):
  params = lg.params()
  for x in lg.sample_x(3):
    est = _estimates(lg, params, x, 0, k=37, chunk=10)
    np.testing.assert_allclose(est["log_px"], lg.log_px(x), atol=2e-4)
    # No gap is left, but the analytic-KL ELBO estimate still has sampling noise.
    assert abs(float(est["elbo"]) - lg.log_px(x)) < 4 * np.sqrt(float(est["elbo_mc_var"]))
    assert float(est["log_px_mc_var"]) < 1e-6


@pytest.mark.parametrize("k,chunk", [(50, 7), (48, 16), (5, 100)])
def test_streaming_equals_one_shot_logmeanexp(lg, k, chunk):
  """Chunks of `chunk` draws (the last one masked past k) give exactly the
  log-mean-exp of the same draws taken at once."""
  params = lg.params(mean_shift=0.5, var_scale=2.0)
  x = jnp.asarray(lg.sample_x(1)[0], jnp.float32)
  chunk = min(chunk, k)
  est = _estimates(lg, params, x, 4, k, chunk)
  _, is_rng = jax.random.split(jax.random.key(4))
  n = -(-k // chunk)
  log_w = jnp.concatenate([objectives.log_weights(lg.vae, params, x,
                                                  jax.random.fold_in(is_rng, i), chunk)
                           for i in range(n)])[:k]
  np.testing.assert_allclose(est["log_px"], logsumexp(log_w) - np.log(k), rtol=1e-6)
  w = np.exp(np.asarray(log_w, np.float64) - float(logsumexp(log_w)))  # w / Σw
  np.testing.assert_allclose(est["log_px_mc_var"], (np.sum(w ** 2) - 1 / k) * k / (k - 1),
                             rtol=1e-4)


def test_delta_method_error_matches_spread_of_repeats(lg):
  """The reported Monte Carlo error of log p̂ agrees with the standard deviation
  of 400 independent estimates (ratio within 0.8..1.25), and their mean lies
  within 4 standard errors (plus the O(1/k) bias) of the exact log p(x)."""
  params = lg.params(mean_shift=0.6, var_scale=2.5)
  x = lg.sample_x(1, seed=3)[0]
  estimator = jax.jit(jax.vmap(lambda r: evaluation.example_estimates(
      lg.vae, params, jnp.asarray(x, jnp.float32), r, elbo_samples=2, analytic_kl=True,
      num_importance_samples=200, chunk=50)))
  out = estimator(jax.random.split(jax.random.key(0), 400))
  est = np.asarray(out["log_px"], np.float64)
  predicted = np.sqrt(np.mean(np.asarray(out["log_px_mc_var"], np.float64)))
  ratio = est.std() / predicted
  assert 0.8 < ratio < 1.25, ratio
  bias = 0.5 * predicted ** 2  # delta method: E[log p̂] ≈ log p - Var/2
  assert abs(est.mean() - lg.log_px(x)) < 4 * est.std() / np.sqrt(400) + 2 * bias


@pytest.mark.parametrize("k", [2, 4])
def test_delta_method_error_at_small_k_uses_the_sample_variance(lg, k):
  """At small k the weights' variance needs ddof=1: with q close to the
  posterior (where the delta method holds), the spread of 4000 estimates
  matches the reported error within 10 % (without the k/(k - 1), √2 too small
  at k = 2)."""
  params = lg.params(mean_shift=0.1, var_scale=1.1)
  x = lg.sample_x(1, seed=3)[0]
  estimator = jax.jit(jax.vmap(lambda r: evaluation.example_estimates(
      lg.vae, params, jnp.asarray(x, jnp.float32), r, elbo_samples=2, analytic_kl=True,
      num_importance_samples=k, chunk=k)))
  out = estimator(jax.random.split(jax.random.key(0), 4000))
  predicted = np.sqrt(np.mean(np.asarray(out["log_px_mc_var"], np.float64)))
  ratio = np.asarray(out["log_px"], np.float64).std() / predicted
  assert 0.9 < ratio < 1.1, ratio


def test_one_importance_sample_reports_no_monte_carlo_error(lg):
  """k = 1 leaves no spread of weights to estimate from: no error, not 0."""
  res = evaluation.evaluate(lg.vae, lg.params(mean_shift=0.5), lg.sample_x(5).astype(np.float32),
                            jax.random.key(0), batch_size=5, elbo_samples=2,
                            num_importance_samples=1, chunk=1)
  assert res["nll"]["mc_err"] is None and np.isfinite(res["nll"]["value"])


def test_closed_form_kl_is_refused_where_a_group_has_none():
  """A two-layer bottom-up stack has no closed form for z1's KL: asking for
  it is an error (the ELBO would leave that KL out), as in the objectives."""
  from vae_jax import data, models

  from conftest import model_config
  m = models.build(model_config("bottom_up"), data.DataSpec((8, 8, 1), 2))
  x = jnp.zeros((8, 8, 1))
  with pytest.raises(ValueError, match="no closed-form KL"):
    evaluation.example_estimates(m, m.init(jax.random.key(0)), x, jax.random.key(1),
                                 elbo_samples=2, analytic_kl=True, num_importance_samples=4,
                                 chunk=4)


def test_evaluate_pads_and_masks_every_example(lg):
  """7 examples in batches of 4: the mean covers exactly the 7 (the padding
  would change it), with the exact posterior making each estimate exact."""
  params = lg.params()
  xs = lg.sample_x(7).astype(np.float32)
  res = evaluation.evaluate(lg.vae, params, xs, jax.random.key(0), batch_size=4,
                            elbo_samples=3, analytic_kl=True, num_importance_samples=9,
                            chunk=4)
  exact = lg.log_px(xs)
  assert res["num_examples"] == 7
  np.testing.assert_allclose(res["nll"]["value"], -exact.mean(), atol=2e-4)
  np.testing.assert_allclose(res["nll"]["se"], exact.std(ddof=1) / np.sqrt(7), rtol=1e-3)
  np.testing.assert_allclose(res["nll"]["bits_per_dim"], -exact.mean() / (6 * np.log(2)),
                             atol=1e-4)
  assert abs(res["elbo"]["value"] - exact.mean()) < 4 * res["elbo"]["mc_err"]
  assert res["nll"]["mc_err"] < 1e-3
