"""The bounds against closed forms on a linear-Gaussian model, and the loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp

from vae_jax import objectives
from vae_jax.objectives import Objective

from linear_gaussian import LinearGaussian


@pytest.fixture(scope="module")
def lg():
  return LinearGaussian()


def test_elbo_plus_posterior_kl_is_log_px_for_arbitrary_q(lg):
  """ELBO(x) + KL(q(z|x) ‖ p(z|x)) = log p(x) with the library's q and KL."""
  xs = lg.sample_x(5)
  for seed in range(3):
    params = lg.params(enc_rng=np.random.default_rng(seed))
    for x in xs:
      q = lg.vae.encode(params, jnp.asarray(x, jnp.float32))
      m, v = np.asarray(q.mean, np.float64), np.exp(np.asarray(q.log_var, np.float64))
      lhs = lg.elbo_closed_form(x, m, v) + lg.kl_to_posterior(x, m, v)
      np.testing.assert_allclose(lhs, lg.log_px(x), rtol=1e-9)
      # The library's analytic KL to the prior is the closed form's.
      np.testing.assert_allclose(q.kl_to_standard_normal(),
                                 0.5 * np.sum(m ** 2 + v - 1 - np.log(v)), rtol=1e-5)


@pytest.mark.parametrize("analytic_kl", [True, False])
def test_monte_carlo_elbo_matches_closed_form(lg, analytic_kl):
  """The library's k-sample ELBO is unbiased: with k = 20,000 it lies within 4
  of its own standard errors (from the per-sample spread) of the closed form."""
  params = lg.params(mean_shift=0.4, var_scale=1.7)
  x = jnp.asarray(lg.sample_x(1)[0], jnp.float32)
  k = 20_000
  terms = objectives.example_terms(lg.vae, params, x, jax.random.key(0), num_samples=k,
                                   analytic_kl=analytic_kl)
  q = lg.vae.encode(params, x)
  m, v = np.asarray(q.mean, np.float64), np.exp(np.asarray(q.log_var, np.float64))
  exact = lg.elbo_closed_form(np.asarray(x, np.float64), m, v)
  log_w = np.asarray(objectives.log_weights(lg.vae, params, x, jax.random.key(0), k),
                     np.float64)
  se = log_w.std() / np.sqrt(k)  # ≥ the analytic-KL estimator's error
  assert abs(float(terms["elbo"]) - exact) < 4 * se, (float(terms["elbo"]), exact, se)


def test_log_weights_are_constant_log_px_at_exact_posterior(lg):
  params = lg.params()
  for x in lg.sample_x(4):
    log_w = objectives.log_weights(lg.vae, params, jnp.asarray(x, jnp.float32),
                                   jax.random.key(3), 64)
    np.testing.assert_allclose(log_w, lg.log_px(x), atol=2e-4)


def test_iwae_increases_with_k_and_approaches_log_px(lg):
  """Common random numbers: iwae_k uses the first k of the same 256 draws in
  each of 300 repeats. Each doubling of k must not lower the mean by more than
  3 standard errors of the paired difference, and the whole climb is strictly
  positive; at k = 256 the gap to log p(x) shrinks to under 5 % of k = 1's."""
  params = lg.params(mean_shift=0.5, var_scale=2.0)
  x = lg.sample_x(1, seed=7)[0]
  keys = jax.random.split(jax.random.key(0), 300)
  log_w = jax.vmap(lambda r: objectives.log_weights(
      lg.vae, params, jnp.asarray(x, jnp.float32), r, 256))(keys)
  ks = [1, 2, 4, 8, 16, 32, 64, 128, 256]
  bounds = np.stack([np.asarray(logsumexp(log_w[:, :k], axis=1) - np.log(k), np.float64)
                     for k in ks])  # (len(ks), repeats)
  for lo, hi in zip(bounds[:-1], bounds[1:]):
    diff = hi - lo
    assert diff.mean() > -3 * diff.std() / np.sqrt(len(diff))
  climb = bounds[-1] - bounds[0]
  assert climb.mean() > 5 * climb.std() / np.sqrt(len(climb))
  exact = lg.log_px(x)
  assert exact - bounds[-1].mean() < 0.05 * (exact - bounds[0].mean())
  assert np.all(bounds.mean(axis=1) < exact + 3 * bounds.std(axis=1) / np.sqrt(300))


def test_example_terms_iwae_is_logmeanexp_of_log_weights(lg):
  params = lg.params(mean_shift=0.3)
  x = jnp.asarray(lg.sample_x(1)[0], jnp.float32)
  t = objectives.example_terms(lg.vae, params, x, jax.random.key(5), num_samples=16,
                               analytic_kl=False)
  log_w = objectives.log_weights(lg.vae, params, x, jax.random.key(5), 16)
  np.testing.assert_allclose(t["iwae"], logsumexp(log_w) - np.log(16), rtol=1e-6)
  np.testing.assert_allclose(t["elbo"], jnp.mean(log_w), rtol=1e-5)


def test_vmapped_terms_equal_python_loop(lg):
  params = lg.params(enc_rng=np.random.default_rng(1))
  batch = jnp.asarray(lg.sample_x(7), jnp.float32)
  rng = jax.random.key(11)
  got = objectives.batch_terms(lg.vae, params, batch, rng, num_samples=3, analytic_kl=True)
  for i, r in enumerate(jax.random.split(rng, 7)):
    one = objectives.example_terms(lg.vae, params, batch[i], r, num_samples=3,
                                   analytic_kl=True)
    for key in ("recon", "kl", "elbo", "iwae", "kl_per_unit"):
      np.testing.assert_allclose(got[key][i], one[key], rtol=1e-5, atol=1e-5)


def test_loss_beta_warmup_free_bits(lg):
  params = lg.params(enc_rng=np.random.default_rng(2))
  batch = jnp.asarray(lg.sample_x(5), jnp.float32)
  rng = jax.random.key(0)
  t = objectives.batch_terms(lg.vae, params, batch, rng, num_samples=1, analytic_kl=True)
  recon, kl = float(jnp.mean(t["recon"])), float(jnp.mean(t["kl"]))

  loss, m = Objective(beta=0.5, kl_warmup_steps=100).loss(lg.vae, params, batch, rng,
                                                          jnp.asarray(30))
  np.testing.assert_allclose(float(m["beta"]), 0.5 * 0.3, rtol=1e-6)
  np.testing.assert_allclose(float(loss), -recon + 0.15 * kl, rtol=1e-5)
  np.testing.assert_allclose(float(m["elbo"]), recon - kl, rtol=1e-5)  # always β = 1

  free = 0.8
  _, m2 = Objective(free_bits=free).loss(lg.vae, params, batch, rng, jnp.asarray(0))
  per_dim = np.asarray(jnp.mean(t["kl_per_unit"], axis=0))
  np.testing.assert_allclose(float(m2["loss"]), -recon + np.maximum(free, per_dim).sum(),
                             rtol=1e-5)
  loss3, m3 = Objective(name="iwae", num_samples=4, analytic_kl=False).loss(
      lg.vae, params, batch, rng, jnp.asarray(0))
  np.testing.assert_allclose(float(loss3), -float(m3["iwae"]))
  assert float(m3["iwae"]) >= float(m3["elbo"])  # same draws: log-mean-exp ≥ mean
