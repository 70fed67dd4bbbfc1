"""One flat latent vector: z ~ p(z) = N(0, I), x | z ~ likelihood(decoder(z)),
q(z|x) = N(encoder(x)) diagonal (Kingma & Welling 2014). With a linear decoder
and a Gaussian likelihood of one variance it is the linear-Gaussian model
(probabilistic PCA) and log p(x) has a closed form (`exact_log_px`)."""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import distributions
from vae_jax.models.base import Draws, Latents, LatentVariableModel, Params, temperature_sample

GROUP = "z"


@dataclasses.dataclass(frozen=True)
class Flat(LatentVariableModel):
  encoder: nn.Module
  decoder: nn.Module
  latent_dim: int

  @property
  def groups(self) -> dict[str, tuple[int, ...]]:
    return {GROUP: (self.latent_dim,)}

  @property
  def analytic_kl(self) -> bool:
    return True

  local_posterior = True

  def init(self, rng: jax.Array) -> Params:
    enc_rng, dec_rng = jax.random.split(rng)
    x = jnp.zeros(self.image_shape, jnp.float32)
    z = jnp.zeros((self.latent_dim,), jnp.float32)
    return {"encoder": self.encoder.init(enc_rng, x)["params"],
            "decoder": self.decoder.init(dec_rng, z)["params"],
            "likelihood": self.likelihood.init_params()}

  def encode(self, params: Params, x: jax.Array) -> distributions.DiagGaussian:
    h = self.encoder.apply({"params": params["encoder"]}, x * self.input_scale)
    mean, log_var = jnp.split(h, 2, axis=-1)
    return distributions.DiagGaussian(mean, log_var)

  def decode(self, params: Params, z: jax.Array) -> jax.Array:
    """The likelihood's parameters, (..., *likelihood.output_shape(image_shape))."""
    return self.decoder.apply({"params": params["decoder"]}, z)

  def draws_from(self, params: Params, x: jax.Array, q: distributions.DiagGaussian,
                 rng: jax.Array, num_samples: int) -> Draws:
    z = q.sample(rng, num_samples)
    log_px_z = self._log_px_z(params, self.decode(params, z), x)
    return Draws(z={GROUP: z}, log_px_z=log_px_z,
                 log_pz={GROUP: distributions.standard_normal_log_prob(z)},
                 log_qz={GROUP: q.log_prob(z)},
                 kl={GROUP: jnp.broadcast_to(q.kl_to_standard_normal_per_dim(), z.shape)})

  def draws(self, params: Params, x: jax.Array, rng: jax.Array, num_samples: int) -> Draws:
    return self.draws_from(params, x, self.encode(params, x), rng, num_samples)

  def posterior_summary(self, params, x):
    return {GROUP: self.encode(params, x)}

  def sample_latents(self, params, rng, temperature=1.0, given=None) -> Latents:
    if given and GROUP in given:
      return {GROUP: given[GROUP]}
    prior = distributions.DiagGaussian(jnp.zeros(self.latent_dim), jnp.zeros(self.latent_dim))
    return {GROUP: temperature_sample(prior, rng, temperature)}

  def mean_image(self, params, z):
    return self.likelihood.mean_image(self.decode(params, z[GROUP]), params["likelihood"])

  def is_linear_gaussian(self, params: Params) -> bool:
    """A linear decoder and a Gaussian likelihood of one variance, no dequantisation."""
    return (set(params["decoder"]) == {"output"} and self.log_prob_offset == 0.0
            and getattr(self.likelihood, "variance", None) in ("scalar", "fixed"))

  def exact_log_px(self, params, images):
    """log N(x | b, W Wᵀ + σ² I) per example, in float64, for the linear-Gaussian case."""
    if not self.is_linear_gaussian(params):
      return None
    dec = params["decoder"]["output"]
    w = np.asarray(dec["kernel"], np.float64).T  # (D, d)
    b = np.asarray(dec["bias"], np.float64)
    return gaussian_marginal_log_prob(images, b, w @ w.T + self._sigma2(params) * np.eye(len(b)))

  def _sigma2(self, params: Params) -> float:
    if self.likelihood.variance == "scalar":
      return math.exp(float(params["likelihood"]["log_var"]))
    return math.exp(self.likelihood.fixed_log_var)


def gaussian_marginal_log_prob(images: np.ndarray, mean: np.ndarray, cov: np.ndarray
                               ) -> np.ndarray:
  """log N(x | mean, cov) per example (rows of `images`, flattened), float64."""
  x = images.reshape(len(images), -1).astype(np.float64) - mean
  chol = np.linalg.cholesky(cov)
  solved = np.linalg.solve(chol, x.T)
  return (-0.5 * np.sum(solved ** 2, axis=0) - np.sum(np.log(np.diag(chol)))
          - 0.5 * len(mean) * math.log(2 * math.pi))
