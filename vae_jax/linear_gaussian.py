"""Linear-Gaussian models and their closed forms (probabilistic PCA).

With linear networks and Gaussians of fixed variance throughout (the flat
model, or a stack of them), the marginal likelihood is exact; for one layer
p(x) = N(x | b, W Wᵀ + σ² I); models compute it (`exact_log_px`). Its
maximum over (W, b, σ²) on data X is probabilistic PCA's (Tipping & Bishop
1999), and the linear VAE's global optimum reaches it (Lucas et al. 2019), so
a trained run can be checked against a number no training produced.
"""

import math

import numpy as np

from vae_jax.models import LatentVariableModel, Params

# The synthetic source `data.name=linear_gaussian`: x = A z + c + noise.
DIM, TRUE_LATENT_DIM, NOISE_STD, NUM_EXAMPLES = 16, 4, 0.3, 3000


def generate(seed: int) -> np.ndarray:
  """NUM_EXAMPLES continuous examples of shape (4, 4, 1) from a fixed random model."""
  rng = np.random.default_rng([seed, 7])
  a = rng.normal(size=(DIM, TRUE_LATENT_DIM)) * np.linspace(2.0, 0.5, TRUE_LATENT_DIM)
  z = rng.normal(size=(NUM_EXAMPLES, TRUE_LATENT_DIM))
  x = z @ a.T + rng.normal(size=DIM) + NOISE_STD * rng.normal(size=(NUM_EXAMPLES, DIM))
  return x.reshape(NUM_EXAMPLES, 4, 4, 1).astype(np.float32)


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


def report(model: LatentVariableModel, params: Params, train_images: np.ndarray,
           test_images: np.ndarray, test_estimate: dict) -> dict | None:
  """The exact check of a trained model whose log p(x) has a closed form
  (goes into eval.json), or None for a model without one. The pPCA maximum
  bounds any linear-Gaussian model whose x depends on a d-dimensional z1:
  its marginal covariance is a rank-d matrix plus σ² I."""
  test_exact = model.exact_log_px(params, test_images)
  if test_exact is None:
    return None
  train_exact = float(np.mean(model.exact_log_px(params, train_images)))
  next_to_x = math.prod(list(model.groups.values())[-1])  # generation order: x's parent last
  optimum = ppca_max_mean_log_likelihood(train_images, next_to_x)
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
