"""Diagnostics on constructed cases with known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import diagnostics, evaluation

from linear_gaussian import LinearGaussian


@pytest.fixture(scope="module")
def lg():
  return LinearGaussian()


def test_ignored_dimension_has_zero_kl_and_is_inactive(lg):
  """An encoder whose dimension 2 outputs N(0, 1) whatever x is: that dimension
  carries no KL and is not an active unit; the others are active."""
  params = lg.params()
  enc = params["encoder"]["output"]
  kernel, bias = np.array(enc["kernel"]), np.array(enc["bias"])
  kernel[:, 2] = 0.0
  bias[2] = 0.0  # mean 0
  kernel[:, 3 + 2] = 0.0
  bias[3 + 2] = 0.0  # log-variance 0
  params["encoder"]["output"] = {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}
  xs = lg.sample_x(300).astype(np.float32)
  res = evaluation.evaluate(lg.vae, params, xs, jax.random.key(0), batch_size=100,
                            elbo_samples=2, analytic_kl=True)
  assert res["kl_per_dim"][2] == pytest.approx(0.0, abs=1e-6)
  assert min(res["kl_per_dim"][:2]) > 0.1
  assert res["active_units"] == 2
  assert res["posterior_mean_variance"][2] == pytest.approx(0.0, abs=1e-12)
  np.testing.assert_allclose(sum(res["kl_per_dim"]), res["rate"], rtol=1e-5)


def test_mutual_information_of_constant_encoder_is_zero():
  means = np.tile([[0.3, -1.0]], (500, 1))
  log_vars = np.tile([[0.1, -0.5]], (500, 1))
  assert abs(diagnostics.mutual_information(means, log_vars, jax.random.key(0))) < 1e-5


def test_mutual_information_matches_closed_form(lg):
  """With the exact posterior, q(x, z) is the model's joint, whose I(x; z) is
  ½ log det(I + WᵀW/σ²). The mixture estimator over N = 4000 examples is
  biased low by at most a few hundredths of a nat here."""
  xs = lg.sample_x(4000, seed=5)
  means = np.stack([lg.posterior(x)[0] for x in xs])
  log_vars = np.tile(np.log(np.diag(lg.post_cov)), (len(xs), 1))
  exact = 0.5 * np.linalg.slogdet(np.eye(3) + lg.W.T @ lg.W / lg.sigma2)[1]
  mi = diagnostics.mutual_information(means.astype(np.float32),
                                      log_vars.astype(np.float32), jax.random.key(1))
  assert exact - 0.1 < mi < exact + 0.05, (mi, exact)


def test_gap_decomposition_with_exact_encoder_is_zero(lg):
  xs = lg.sample_x(40).astype(np.float32)
  gaps = diagnostics.gap_decomposition(lg.vae, lg.params(), xs, jax.random.key(0),
                                       num_steps=100, elbo_samples=50,
                                       num_importance_samples=50, batch_size=20)
  assert abs(gaps["amortisation_gap"]) < 4 * gaps["amortisation_gap_se"] + 1e-3
  assert abs(gaps["approximation_gap"]) < 4 * gaps["approximation_gap_se"] + 1e-3
  # log p(x) from the optimised proposal: near-exact, so within 0.01 nats.
  np.testing.assert_allclose(gaps["log_px"], lg.log_px(xs.astype(np.float64)).mean(),
                             atol=1e-2)


def test_gap_decomposition_finds_the_amortisation_gap(lg):
  """A shifted, over-wide encoder: the optimised q recovers the exact posterior
  (the family holds it, so no approximation gap), and the amortisation gap is
  the closed-form KL(q_enc ‖ p(z|x)) within Monte Carlo error."""
  params = lg.params(mean_shift=0.5, var_scale=2.0)
  xs = lg.sample_x(40, seed=2).astype(np.float32)
  gaps = diagnostics.gap_decomposition(lg.vae, params, xs, jax.random.key(0),
                                       num_steps=400, elbo_samples=200,
                                       num_importance_samples=200, batch_size=40)
  kl = []
  for x in xs:
    q = lg.vae.encode(params, jnp.asarray(x))
    kl.append(lg.kl_to_posterior(x.astype(np.float64), np.asarray(q.mean, np.float64),
                                 np.exp(np.asarray(q.log_var, np.float64))))
  assert abs(gaps["approximation_gap"]) < 0.02
  assert gaps["amortisation_gap"] == pytest.approx(np.mean(kl), abs=0.05)
  assert gaps["elbo_encoder"] < gaps["elbo_optimised"] <= gaps["log_px"] + 0.01


def _digits_model():
  from vae_jax import data, models

  from conftest import experiment
  c = experiment("digits")
  d = data.load(c.data, c.model.likelihood)
  vae = models.build(c.model, d.spec)
  return c, vae, vae.init(jax.random.key(0)), d.test[:16]


@pytest.mark.parametrize("chunk_floats", [None, 1])
def test_gradient_noise_matches_a_loop_of_single_gradients(monkeypatch, chunk_floats):
  """Second implementation: one jax.grad per draw in a Python loop, numpy stats;
  the draws all vmapped at once, and in memory-bounded chunks (here of one)."""
  from vae_jax.objectives import Objective
  if chunk_floats is not None:
    monkeypatch.setattr(diagnostics, "GRADIENT_CHUNK_FLOATS", chunk_floats)
  c, vae, params, x = _digits_model()
  objective = Objective.from_config(c.objective)
  got = diagnostics.gradient_noise(vae, objective, params, x, jax.random.key(3), 6)
  keys = jax.random.split(jax.random.key(3), 6)
  loss = lambda p, k: objective.loss(vae, p, x, k, jnp.asarray(0))[0]
  g = np.stack([np.concatenate([np.ravel(a) for a in jax.tree.leaves(jax.grad(loss)(params, k))])
                for k in keys]).astype(np.float64)
  np.testing.assert_allclose(got["all_variance"], g.var(axis=0, ddof=1).sum(), rtol=1e-4)
  # ‖E g‖² unbiased: the mean of g_i·g_j over ordered pairs of distinct draws.
  gram = g @ g.T
  pairs = (gram.sum() - np.trace(gram)) / (len(g) * (len(g) - 1))
  np.testing.assert_allclose(got["all_mean_sq_norm"], pairs, rtol=1e-4)


def test_gradient_variance_falls_as_one_over_the_number_of_samples():
  """The ELBO gradient with S z-samples per example averages S independent
  single-sample gradients: its variance is exactly 1/S times as large in
  expectation. 400 draws: the ratio is within 15 % of 1/4."""
  from vae_jax.objectives import Objective
  c, vae, params, x = _digits_model()
  var = {}
  for s in (1, 4):
    c.objective.num_samples = s
    var[s] = diagnostics.gradient_noise(vae, Objective.from_config(c.objective), params, x,
                                        jax.random.key(s), 400)["decoder_variance"]
  assert abs(var[4] / var[1] - 0.25) < 0.15 * 0.25
