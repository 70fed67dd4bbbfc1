"""Priors of a model's top latent group (`config.model.prior`):

  standard   N(0, I): the KL to a Gaussian q has a closed form
  mixture    Σ_k π_k N(μ_k, σ_k²): K learned components (means, log-variances, logits)
  vampprior  (1/K) Σ_k q(z | u_k): the posterior at K learned pseudo-inputs u_k
             (Tomczak & Welling 2018); with an IAF posterior, the components are
             Gaussians, not the flow's density: the base q_0(z | u_k)'s variances
             at the flow's image of its mean (the group's `posterior_summary`)

The learned parts live in params["decoder"]["prior"]: they belong to the
generative model (the gradient-noise instrument counts them there). The
VampPrior's components come from the model's own encoder: the model passes
`posterior_at`, a function from a (K, *image) batch of inputs in [0, 1] (as
the encoder sees pixels) to the group's Gaussians (K, *shape). Pseudo-inputs
are stored as logits, sigmoid(u) being the image.
"""

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from vae_jax import distributions

NAMES = ("standard", "mixture", "vampprior")
LOG_VAR_BOUND = 10.0

PosteriorAt = Callable[[jax.Array], distributions.DiagGaussian]


@dataclasses.dataclass(frozen=True)
class Prior:
  kind: str = "standard"
  components: int = 1
  shape: tuple[int, ...] = ()  # the group's shape
  image_shape: tuple[int, ...] = ()  # the pseudo-inputs' (vampprior)

  @property
  def closed_form_kl(self) -> bool:
    """Whether KL(Gaussian q ‖ this prior) has a closed form."""
    return self.kind == "standard"

  def init(self, rng: jax.Array) -> dict | None:
    """The learned parameters, or None for the standard normal."""
    k = self.components
    if self.kind == "mixture":
      return {"means": jax.random.normal(rng, (k,) + self.shape),
              "log_vars": jnp.zeros((k,) + self.shape), "logits": jnp.zeros((k,))}
    if self.kind == "vampprior":
      return {"pseudo_inputs": 0.1 * jax.random.normal(rng, (k,) + self.image_shape)}
    return None

  def mixture(self, params: dict, posterior_at: PosteriorAt | None = None
              ) -> tuple[jax.Array, distributions.DiagGaussian]:
    """log π (K,) and the components, a DiagGaussian of shape (K, *shape)."""
    if self.kind == "mixture":
      log_var = LOG_VAR_BOUND * jnp.tanh(params["log_vars"] / LOG_VAR_BOUND)
      return (jax.nn.log_softmax(params["logits"]),
              distributions.DiagGaussian(params["means"], log_var))
    if self.kind == "vampprior":
      q = posterior_at(jax.nn.sigmoid(params["pseudo_inputs"]))
      return jnp.full((self.components,), -math.log(self.components)), q
    raise ValueError(f"prior {self.kind!r} is not a mixture")

  def log_prob(self, params: dict | None, z: jax.Array,
               posterior_at: PosteriorAt | None = None) -> jax.Array:
    """log p(z) of draws z (n, *shape), summed over the group: (n,)."""
    ndim = len(self.shape)
    if self.kind == "standard":
      return distributions.gaussian_log_prob(0.0, 0.0, z, ndim)
    log_w, comp = self.mixture(params, posterior_at)
    # (n, K): every draw against every component.
    lp = distributions.gaussian_log_prob(comp.mean[None], comp.log_var[None], z[:, None], ndim)
    return logsumexp(log_w + lp, axis=1)

  def sample(self, params: dict | None, rng: jax.Array, temperature: float = 1.0,
             posterior_at: PosteriorAt | None = None) -> jax.Array:
    """One draw (*shape); the chosen component's standard deviation scaled by
    `temperature`."""
    pick, noise = jax.random.split(rng)
    eps = jax.random.normal(noise, self.shape)
    if self.kind == "standard":
      return temperature * eps
    log_w, comp = self.mixture(params, posterior_at)
    k = jax.random.categorical(pick, log_w)
    # jnp: the parameters may be host (NumPy) arrays, which a traced k cannot index.
    mean, log_var = jnp.asarray(comp.mean)[k], jnp.asarray(comp.log_var)[k]
    return mean + temperature * jnp.exp(0.5 * log_var) * eps
