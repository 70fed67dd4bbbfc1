"""One flat latent vector: z ~ p(z) = N(0, I), x | z ~ likelihood(decoder(z)),
q(z|x) = N(encoder(x)) diagonal (Kingma & Welling 2014). p(z) may be a learned
mixture or a VampPrior (`prior`, vae_jax.priors), and q(z|x) an inverse
autoregressive flow on the Gaussian (`flow`, vae_jax.flows; the encoder then
also emits its context vector). With a linear decoder
and a Gaussian likelihood of one variance it is the linear-Gaussian model
(probabilistic PCA) and log p(x) has a closed form (`exact_log_px`)."""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import distributions, flows, priors
from vae_jax.models.base import Draws, Latents, LatentVariableModel, Params, per_draw

GROUP = "z"


@dataclasses.dataclass(frozen=True)
class Flat(LatentVariableModel):
  encoder: nn.Module
  decoder: nn.Module
  latent_dim: int
  prior: priors.Prior = priors.Prior()
  flow: flows.IAF | None = None  # an IAF posterior; None: the Gaussian

  x_decoder_path = ("decoder",)  # its MLP decoder's last layer: with_output_bias

  @property
  def groups(self) -> dict[str, tuple[int, ...]]:
    return {GROUP: (self.latent_dim,)}

  @property
  def analytic_kl(self) -> bool:
    return self.flow is None and self.prior.closed_form_kl

  @property
  def gaussian_posteriors(self) -> bool:
    return self.flow is None

  @property
  def local_posterior(self) -> bool:  # the gap split: a Gaussian q and N(0, I)
    return self.analytic_kl

  def init(self, rng: jax.Array) -> Params:
    enc_rng, dec_rng = jax.random.split(rng)
    # The optional parts' keys leave the others as they were.
    flow_rng, prior_rng = jax.random.split(jax.random.fold_in(rng, 1))
    x = jnp.zeros(self.image_shape, jnp.float32)
    z = jnp.zeros((self.latent_dim,), jnp.float32)
    enc = self.encoder.init(enc_rng, x)["params"]
    dec = self.decoder.init(dec_rng, z)["params"]
    if self.flow is not None:
      enc = {**enc, "flow": self.flow.init(flow_rng)}
    prior_params = self.prior.init(prior_rng)
    if prior_params is not None:
      dec = {**dec, "prior": prior_params}
    return {"encoder": enc, "decoder": dec, "likelihood": self.likelihood.init_params()}

  def _encoder_out(self, params: Params, x: jax.Array) -> jax.Array:
    """(mean, log_var, the flow's context) concatenated."""
    net = {k: v for k, v in params["encoder"].items() if k != "flow"}
    return self.net(self.encoder, net, x * self.input_scale)

  def encode(self, params: Params, x: jax.Array) -> distributions.DiagGaussian:
    """The Gaussian q(z|x) (with a flow: its base distribution)."""
    h = self._encoder_out(params, x)[..., :2 * self.latent_dim]
    mean, log_var = jnp.split(h, 2, axis=-1)
    return distributions.DiagGaussian(mean, log_var)

  def decode(self, params: Params, z: jax.Array) -> jax.Array:
    """The likelihood's parameters, (..., *likelihood.output_shape(image_shape))."""
    net = {k: v for k, v in params["decoder"].items() if k != "prior"}
    return self.net(self.decoder, net, z)

  def _draws(self, params: Params, x: jax.Array, q: distributions.DiagGaussian,
             context: jax.Array | None, rng: jax.Array, num_samples: int,
             stop_grad_q: bool) -> Draws:
    eps = jax.random.normal(rng, (num_samples,) + q.mean.shape, q.mean.dtype)
    z, log_qz = flows.sample_and_log_prob(q, eps, self.flow, params["encoder"].get("flow"),
                                          context, stop_grad_q)
    log_px_z = self._log_px_z(params, per_draw(lambda z: self.decode(params, z), z), x)
    kl = ({GROUP: jnp.broadcast_to(q.kl_to_standard_normal_per_dim(), z.shape)}
          if self.analytic_kl else {})
    return Draws(z={GROUP: z}, log_px_z=log_px_z,
                 log_pz={GROUP: self.top_log_prior(params, z)}, log_qz={GROUP: log_qz}, kl=kl)

  def draws_from(self, params: Params, x: jax.Array, q: distributions.DiagGaussian,
                 rng: jax.Array, num_samples: int) -> Draws:
    return self._draws(params, x, q, None, rng, num_samples, False)

  def draws(self, params: Params, x: jax.Array, rng: jax.Array, num_samples: int,
            stop_grad_q: bool = False) -> Draws:
    h = self._encoder_out(params, x)
    d = self.latent_dim
    q = distributions.DiagGaussian(h[..., :d], h[..., d:2 * d])
    return self._draws(params, x, q, h[..., 2 * d:], rng, num_samples, stop_grad_q)

  def posterior_summary(self, params, x):
    """q(z|x); with a flow, its base Gaussian moved to the flow's image of the
    base mean (a point summary: what active units and reconstructions use)."""
    q = self.encode(params, x)
    if self.flow is None:
      return {GROUP: q}
    context = self._encoder_out(params, x)[..., 2 * self.latent_dim:]
    mean, _ = self.flow.forward(params["encoder"]["flow"], q.mean, context)
    return {GROUP: distributions.DiagGaussian(mean, q.log_var)}

  def sample_latents(self, params, rng, temperature=1.0, given=None) -> Latents:
    if given and GROUP in given:
      return {GROUP: given[GROUP]}
    return {GROUP: self.top_prior_sample(params, rng, temperature)}

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
