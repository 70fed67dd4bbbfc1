"""The pPCA closed form, and a trained linear VAE reaching it."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from vae_jax import config as config_lib
from vae_jax import data, linear_gaussian, models, train

from conftest import experiment


def _params_for(w, b, sigma2):
  d = w.shape[1]
  return {"encoder": {}, "likelihood": {"log_var": jnp.float32(math.log(sigma2))},
          "decoder": {"output": {"kernel": jnp.asarray(w.T, jnp.float32),
                                 "bias": jnp.asarray(b, jnp.float32)}}}, d


def _vae(latent_dim):
  c = config_lib.default().model
  c.encoder_hidden, c.decoder_hidden, c.latent_dim = (), (), latent_dim
  c.likelihood, c.gaussian_variance = "gaussian", "scalar"
  return models.build(c, data.DataSpec((4, 4, 1), None))


def test_ppca_maximum_is_attained_by_the_tipping_bishop_solution():
  """The closed-form maximum equals scipy's log-density at W = U (Λ - σ²)^½,
  b = mean, σ² = mean discarded eigenvalue; perturbing W or σ² only lowers it."""
  x = linear_gaussian.generate(0)
  flat = x.reshape(len(x), -1).astype(np.float64)
  q = 3
  eigval, eigvec = np.linalg.eigh(np.cov(flat, rowvar=False, bias=True))
  eigval, eigvec = eigval[::-1], eigvec[:, ::-1]
  sigma2 = eigval[q:].mean()
  w = eigvec[:, :q] * np.sqrt(eigval[:q] - sigma2)
  b = flat.mean(0)
  best = linear_gaussian.ppca_max_mean_log_likelihood(x, q)
  scipy_ll = stats.multivariate_normal.logpdf(flat, b, w @ w.T + sigma2 * np.eye(16)).mean()
  np.testing.assert_allclose(best, scipy_ll, rtol=1e-10)
  params, _ = _params_for(w, b, sigma2)
  np.testing.assert_allclose(_vae(q).exact_log_px(params, x).mean(),
                             scipy_ll, rtol=1e-5)  # the library's exact log p(x), float32 W
  rng = np.random.default_rng(0)
  for scale in (1.0, 1.1, 0.9):
    wp = w + 0.05 * rng.normal(size=w.shape)
    worse = stats.multivariate_normal.logpdf(flat, b, wp @ wp.T + scale * sigma2 * np.eye(16))
    assert worse.mean() < best


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  c = experiment("linear_gaussian", None)
  c.eval.gap_examples = 0
  c.train.progress_bar = False
  return train.train_and_evaluate(c, str(tmp_path_factory.mktemp("lg")))["test"]


def test_trained_linear_vae_reaches_the_ppca_maximum(trained):
  """After 4,000 Adam steps the exact train log-likelihood is within 0.05
  nats/example of pPCA's maximum, and never above it (beyond 1e-4 of float32)."""
  lg = trained["linear_gaussian"]
  assert -1e-4 < lg["train_gap_to_ppca_maximum"] < 0.05, lg


def test_importance_sampled_estimate_matches_exact_log_px(trained):
  """k = 1,000: the estimate agrees with the exact mean test log p(x) within 4
  Monte Carlo errors plus 0.005 nats of the estimator's O(1/k) downward bias."""
  lg = trained["linear_gaussian"]
  assert abs(lg["importance_sampled_minus_exact"]) < 4 * lg["importance_sampled_mc_err"] + 5e-3
  assert trained["elbo"]["value"] < lg["test_log_px_exact"]
