"""The one interface every latent-variable model implements.

A model is a frozen dataclass of static structure (networks, likelihood,
shapes); every method is a pure function of one parameter pytree and works on
ONE example, so objectives and evaluation `jax.vmap` it over a batch. Latents
are a dict of named groups in generation order (top first), each of any shape
(a vector, or (H, W, C) for a spatial group); a flat latent vector is the
one-group case.

  params = model.init(rng)          # {"encoder": ..., "decoder": ..., "likelihood": ...}
  d = model.draws(params, x, rng, k)  # k draws z ~ q(z|x) and their log-densities
  d.log_weights()                   # log p(x, z_i) - log q(z_i|x), shape (k,)

`params["encoder"]` holds what only inference uses, `params["decoder"]` the
generative model's networks (and anything shared by both): the gradient-noise
instrument reports the two apart.
"""

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import distributions

Params = Any
Latents = dict[str, jax.Array]


class Draws(NamedTuple):
  """k draws z_i ~ q(z|x) of one example, with per-draw, per-group densities.

  z[g]:      (k, *shape of g)
  log_px_z:  (k,)  log p(x|z_i) in nats
  log_pz[g]: (k,)  log p(z_g | z_<g) at the draw (the prior of group g)
  log_qz[g]: (k,)  log q(z_g | x, z_<g) at the draw
  kl[g]:     (k, *shape of g) KL(q(z_g|·) ‖ p(z_g|·)) per unit, in closed form,
             at the draw's conditioning; only for groups that have one.
  """
  z: Latents
  log_px_z: jax.Array
  log_pz: dict[str, jax.Array]
  log_qz: dict[str, jax.Array]
  kl: dict[str, jax.Array]

  def log_weights(self) -> jax.Array:
    """log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x), shape (k,)."""
    return self.log_px_z + sum(self.log_pz.values()) - sum(self.log_qz.values())

  def kl_mc_per_group(self) -> dict[str, jax.Array]:
    """log q(z_g|·) - log p(z_g|·) per draw: the Monte Carlo KL of each group."""
    return {g: self.log_qz[g] - self.log_pz[g] for g in self.log_qz}

  def kl_analytic_per_group(self) -> dict[str, jax.Array]:
    """The closed-form KL of each group per draw, (k,); every group must have one."""
    return {g: jnp.sum(v.reshape(v.shape[0], -1), axis=1) for g, v in self.kl.items()}


@dataclasses.dataclass(frozen=True)
class LatentVariableModel:
  """What objectives, evaluation, instruments, sweeps and figures may use.

  Subclasses set the fields and implement the methods that raise here.
  """
  image_shape: tuple[int, ...]
  likelihood: Any
  # The encoder sees x * input_scale (integer pixels -> [0, 1]).
  input_scale: float
  # Added to log p(x|z): -D log L turns the density of dequantised pixels
  # y = (x + u) / L into a probability of the discrete x (Theis et al. 2016).
  log_prob_offset: float
  # The networks' arithmetic (`net`); the rest (densities, KLs, sums) is float32.
  compute_dtype: str = dataclasses.field(default="float32", kw_only=True)

  def computing_in(self, dtype: str) -> "LatentVariableModel":
    """This model with its networks computing in `dtype` ('float32', 'bfloat16'):
    mixed precision, the parameters float32 (their gradients too)."""
    return dataclasses.replace(self, compute_dtype=dtype)

  def net(self, module, params: Params, *inputs: jax.Array) -> Any:
    """`module.apply` at `params`, in `compute_dtype`: parameters and inputs are
    cast to it, the output back to float32, so that the densities, KLs and
    sums over pixels built on it keep float32's precision."""
    if self.compute_dtype == "float32":
      return module.apply({"params": params}, *inputs)
    dtype = jnp.dtype(self.compute_dtype)
    cast = lambda tree, to: jax.tree.map(
        lambda a: a.astype(to) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)
    return cast(module.apply({"params": cast(params, dtype)}, *cast(inputs, dtype)),
                jnp.float32)

  @property
  def num_pixels(self) -> int:
    """D, the dimensions of one example (for bits/dim)."""
    return math.prod(self.image_shape)

  @property
  def floats_per_draw(self) -> int:
    """About the largest activation of one draw, in floats: what sizes the
    importance-sampling chunks. The likelihood's parameters, unless a model
    says otherwise."""
    return math.prod(self.likelihood.output_shape(self.image_shape))

  @property
  def groups(self) -> dict[str, tuple[int, ...]]:
    """Latent group name -> shape, in generation order (top first)."""
    raise NotImplementedError

  @property
  def analytic_kl(self) -> bool:
    """Whether every group's KL has a closed form (`Draws.kl` has them all)."""
    raise NotImplementedError

  @property
  def gaussian_posteriors(self) -> bool:
    """Whether each group's q is the Gaussian `posterior_summary` gives (no
    flow): what the mutual information's mixture estimator needs."""
    return True

  def init(self, rng: jax.Array) -> Params:
    raise NotImplementedError

  def draws(self, params: Params, x: jax.Array, rng: jax.Array, num_samples: int,
            stop_grad_q: bool = False) -> Draws:
    """k draws z_i ~ q(z|x). With `stop_grad_q`, each log q(z_g|·) is evaluated
    with q's parameters under stop_gradient while the draws keep theirs (the
    path derivative of STL and DReG); the values are the same."""
    raise NotImplementedError

  def posterior_summary(self, params: Params, x: jax.Array
                        ) -> dict[str, distributions.DiagGaussian]:
    """Each group's Gaussian q(z_g|x, z_<g) with the groups above at their
    posterior means: exact for a group that depends on x alone; what active
    units and mutual information use."""
    raise NotImplementedError

  def sample_latents(self, params: Params, rng: jax.Array, temperature: float = 1.0,
                     given: Latents | None = None) -> Latents:
    """One draw from the prior, every group's standard deviation scaled by
    `temperature` (NVAE, VDVAE); groups in `given` take those values instead."""
    raise NotImplementedError

  def mean_image(self, params: Params, z: Latents) -> jax.Array:
    """E[x|z] in [0, 1] for one draw z (every group given)."""
    raise NotImplementedError

  def reconstruct(self, params: Params, x: jax.Array) -> jax.Array:
    """E[x|z] at the posterior means."""
    return self.mean_image(params, {g: q.mean for g, q in
                                    self.posterior_summary(params, x).items()})

  # The prior of the top group (vae_jax.priors); subclasses declare the field
  # `prior: priors.Prior`, its learned parameters are params["decoder"]["prior"].
  def top_log_prior(self, params: Params, z: jax.Array) -> jax.Array:
    """log p(z_top) of draws (n, *shape of the top group), (n,)."""
    return self.prior.log_prob(params["decoder"].get("prior"), z, self._posterior_at(params))

  def top_prior_sample(self, params: Params, rng: jax.Array, temperature: float) -> jax.Array:
    return self.prior.sample(params["decoder"].get("prior"), rng, temperature,
                             self._posterior_at(params))

  def _posterior_at(self, params: Params):
    """The VampPrior's components: the top group's `posterior_summary` at a batch
    of inputs u in [0, 1] (what the encoder sees), (K, *shape)."""
    top = next(iter(self.groups))
    one = lambda u: self.posterior_summary(params, u / self.input_scale)[top]
    return lambda u: jax.vmap(one)(u)

  # Optional: a model whose x-decoder ends in a dense layer of one output per
  # pixel (`output_bias=data_mean`); `x_decoder_path` names it in params
  # (a class attribute, not a field).
  x_decoder_path = None

  def with_output_bias(self, params: Params, bias: np.ndarray) -> Params:
    """`params` with the x-decoder's last bias set to `bias` (one per pixel)."""
    if self.x_decoder_path is None:
      raise NotImplementedError(f"{type(self).__name__} has no per-pixel output bias")
    params = jax.tree.map(lambda a: a, params)  # a new tree: the caller's stays as it was
    node = params
    for key in self.x_decoder_path:
      node = node[key]
    node = node["output"]
    node["bias"] = jnp.asarray(bias, node["bias"].dtype).reshape(node["bias"].shape)
    return params

  # Optional: a model whose q(z|x) is one Gaussian given by the encoder
  # (`local_posterior`) can have it optimised per example (the gap split).
  local_posterior = False

  def encode(self, params: Params, x: jax.Array) -> distributions.DiagGaussian:
    raise NotImplementedError(f"{type(self).__name__} has no single local posterior")

  def draws_from(self, params: Params, x: jax.Array, q: distributions.DiagGaussian,
                 rng: jax.Array, num_samples: int) -> Draws:
    raise NotImplementedError(f"{type(self).__name__} has no single local posterior")

  # Optional: a model whose log p(x) has a closed form.
  def exact_log_px(self, params: Params, images: np.ndarray) -> np.ndarray | None:
    """log p(x) per example in float64, or None where there is no closed form."""
    return None

  def _log_px_z(self, params: Params, raw: jax.Array, x: jax.Array) -> jax.Array:
    return self.likelihood.log_prob_image(raw, x, params["likelihood"]) + self.log_prob_offset


def temperature_sample(p: distributions.DiagGaussian, rng: jax.Array,
                       temperature: float) -> jax.Array:
  """μ + t σ ε: one draw at temperature t (t = 0 gives the mean)."""
  eps = jax.random.normal(rng, p.mean.shape, p.mean.dtype)
  return p.mean + temperature * jnp.exp(0.5 * p.log_var) * eps


def per_draw(fn, z: jax.Array):
  """fn of k draws z (k, ...), the draws' axis kept; with k = 1, fn of z[0].

  Under the batch's vmap a network then sees (B, n) rather than (B, 1, n): its
  weight gradients contract one axis, not two, and XLA:CPU computes them without
  a transposing copy of each operand (8 % of an MLP step at batch 512).
  """
  if z.shape[0] == 1:
    return jax.tree.map(lambda a: a[None], fn(z[0]))
  return fn(z)


LOG_VAR_BOUND = 10.0  # |log σ²| of every conditional Gaussian, softly


def split_gaussian(h: jax.Array) -> distributions.DiagGaussian:
  """A network's output (..., 2n) as N(mean, exp(log σ²)), the log-variance
  softly clamped to ±LOG_VAR_BOUND."""
  mean, log_var = jnp.split(h, 2, axis=-1)
  return distributions.DiagGaussian(mean, soft_clamp(log_var, LOG_VAR_BOUND))


def soft_clamp(x: jax.Array, bound: float) -> jax.Array:
  """bound · tanh(x / bound): keeps log-variances in range with gradients
  everywhere (NVAE's soft clamping), so one bad step cannot give exp(±inf)."""
  return bound * jnp.tanh(x / bound)
