"""A linear-Gaussian VAE with everything in closed form (float64 numpy).

z ~ N(0, I_d), x | z ~ N(W z + b, σ² I_D). With W's columns orthogonal, the
posterior p(z|x) = N(Σ Wᵀ(x - b)/σ², Σ), Σ = (I + WᵀW/σ²)⁻¹, is diagonal, so
the library's linear encoder can represent it exactly.
"""

import jax.numpy as jnp
import numpy as np
from scipy import stats

from vae_jax import config as config_lib
from vae_jax import data, models


class LinearGaussian:
  def __init__(self, num_pixels=6, latent_dim=3, sigma2=0.3, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(num_pixels, latent_dim)))
    self.W = q * rng.uniform(0.5, 2.0, size=latent_dim)
    self.b = rng.normal(size=num_pixels)
    self.sigma2 = sigma2
    self.D, self.d = num_pixels, latent_dim
    self.post_cov = np.linalg.inv(np.eye(latent_dim) + self.W.T @ self.W / sigma2)
    c = config_lib.default().model
    c.encoder_hidden, c.decoder_hidden = (), ()
    c.latent_dim, c.likelihood, c.gaussian_variance = latent_dim, "gaussian", "scalar"
    self.vae = models.build(c, data.DataSpec((num_pixels,), None))

  def sample_x(self, n, seed=1):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, self.d))
    return z @ self.W.T + self.b + np.sqrt(self.sigma2) * rng.normal(size=(n, self.D))

  def log_px(self, x):
    cov = self.W @ self.W.T + self.sigma2 * np.eye(self.D)
    return stats.multivariate_normal.logpdf(x, self.b, cov)

  def posterior(self, x):
    """Mean and covariance of p(z|x)."""
    return (x - self.b) @ self.W @ self.post_cov.T / self.sigma2, self.post_cov

  def params(self, mean_shift=0.0, var_scale=1.0, enc_rng=None):
    """Library params: the exact posterior as encoder (optionally perturbed), or,
    with `enc_rng`, a random linear encoder: an arbitrary q."""
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    kernel_mean = self.W @ self.post_cov / self.sigma2  # (D, d)
    bias_mean = -self.b @ kernel_mean + mean_shift
    kernel = np.concatenate([kernel_mean, np.zeros((self.D, self.d))], axis=1)
    bias = np.concatenate([bias_mean, np.log(np.diag(self.post_cov) * var_scale)])
    if enc_rng is not None:
      kernel = enc_rng.normal(size=kernel.shape) * 0.5
      bias = enc_rng.normal(size=bias.shape) * 0.5
    return {"encoder": {"output": {"kernel": f32(kernel), "bias": f32(bias)}},
            "decoder": {"output": {"kernel": f32(self.W.T), "bias": f32(self.b)}},
            "likelihood": {"log_var": f32(np.log(self.sigma2))}}

  def elbo_closed_form(self, x, m, v):
    """E_q[log p(x|z)] - KL(q ‖ p(z)) for q = N(m, diag v), exactly."""
    resid = x - self.W @ m - self.b
    recon = (-0.5 * self.D * np.log(2 * np.pi * self.sigma2)
             - (resid @ resid + np.sum(v * np.sum(self.W ** 2, axis=0))) / (2 * self.sigma2))
    kl_prior = 0.5 * np.sum(m ** 2 + v - 1.0 - np.log(v))
    return recon - kl_prior

  def kl_to_posterior(self, x, m, v):
    mu, cov = self.posterior(x)
    prec = np.linalg.inv(cov)
    diff = mu - m
    return 0.5 * (np.trace(prec @ np.diag(v)) + diff @ prec @ diff - self.d
                  + np.linalg.slogdet(cov)[1] - np.sum(np.log(v)))
