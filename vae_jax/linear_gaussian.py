"""The linear-Gaussian VAE and its closed forms (probabilistic PCA).

With a linear decoder and one learned σ², the VAE's marginal likelihood is
exact: p(x) = N(x | b, W Wᵀ + σ² I). Its maximum over (W, b, σ²) on data X
is probabilistic PCA's (Tipping & Bishop 1999), and the linear VAE's global
optimum reaches it (Lucas et al. 2019), so a trained run can be checked
against a number no training produced.
"""

import math

import ml_collections
import numpy as np

from vae_jax.model import VAE, Params

# The synthetic source `data.name=linear_gaussian`: x = A z + c + noise.
DIM, TRUE_LATENT_DIM, NOISE_STD, NUM_EXAMPLES = 16, 4, 0.3, 3000


def generate(seed: int) -> np.ndarray:
  """NUM_EXAMPLES continuous examples of shape (4, 4, 1) from a fixed random model."""
  rng = np.random.default_rng([seed, 7])
  a = rng.normal(size=(DIM, TRUE_LATENT_DIM)) * np.linspace(2.0, 0.5, TRUE_LATENT_DIM)
  z = rng.normal(size=(NUM_EXAMPLES, TRUE_LATENT_DIM))
  x = z @ a.T + rng.normal(size=DIM) + NOISE_STD * rng.normal(size=(NUM_EXAMPLES, DIM))
  return x.reshape(NUM_EXAMPLES, 4, 4, 1).astype(np.float32)


def applies(config: ml_collections.ConfigDict) -> bool:
  """Whether the model is linear-Gaussian, so that log p(x) is exact."""
  m = config.model
  return (m.likelihood == "gaussian" and m.gaussian_variance in ("scalar", "fixed")
          and tuple(m.decoder_hidden) == () and not config.data.dequantize)


def exact_log_px(vae: VAE, params: Params, images: np.ndarray) -> np.ndarray:
  """log N(x | b, W Wᵀ + σ² I) per example, in float64."""
  dec = params["decoder"]["output"]
  w = np.asarray(dec["kernel"], np.float64).T  # (D, d)
  b = np.asarray(dec["bias"], np.float64)
  if vae.likelihood.variance == "scalar":
    sigma2 = math.exp(float(params["likelihood"]["log_var"]))
  else:
    sigma2 = math.exp(vae.likelihood.fixed_log_var)
  x = images.reshape(len(images), -1).astype(np.float64) - b
  cov = w @ w.T + sigma2 * np.eye(len(b))
  chol = np.linalg.cholesky(cov)
  solved = np.linalg.solve(chol, x.T)
  return (-0.5 * np.sum(solved ** 2, axis=0) - np.sum(np.log(np.diag(chol)))
          - 0.5 * len(b) * math.log(2 * math.pi))


def ppca_max_mean_log_likelihood(images: np.ndarray, latent_dim: int) -> float:
  """max over (W, b, σ²) of the mean log-likelihood of pPCA with `latent_dim`
  components: -½ (D log 2π + Σ_{j≤q} log λ_j + (D - q) log σ² + D), with λ the
  eigenvalues of the sample covariance and σ² the mean of the discarded ones."""
  x = images.reshape(len(images), -1).astype(np.float64)
  d = x.shape[1]
  eig = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True)))[::-1]
  q = min(latent_dim, d - 1)
  sigma2 = eig[q:].mean()
  return float(-0.5 * (d * math.log(2 * math.pi) + np.sum(np.log(eig[:q]))
                       + (d - q) * math.log(sigma2) + d))


def report(vae: VAE, params: Params, train_images: np.ndarray, test_images: np.ndarray,
           test_estimate: dict, latent_dim: int) -> dict:
  """The exact check of a trained linear-Gaussian run (goes into eval.json)."""
  train_exact = float(np.mean(exact_log_px(vae, params, train_images)))
  test_exact = exact_log_px(vae, params, test_images)
  optimum = ppca_max_mean_log_likelihood(train_images, latent_dim)
  nll = test_estimate["nll"]
  return {
      "train_log_px_exact": train_exact,
      "train_log_px_ppca_maximum": optimum,
      "train_gap_to_ppca_maximum": optimum - train_exact,
      "test_log_px_exact": float(np.mean(test_exact)),
      "test_log_px_importance_sampled": -nll["value"],
      "importance_sampled_minus_exact": -nll["value"] - float(np.mean(test_exact)),
      "importance_sampled_mc_err": nll["mc_err"],
  }
